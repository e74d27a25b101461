"""Record schemas that travel on the platform's topics, as plain slotted dataclasses.

Faust-free on purpose: `models/` and the edge agent build and read these too. Wire format is JSON
(orjson); `to_wire()` gives the dict that is serialized. Times are epoch seconds (UTC) as floats.

Input on `sensor-readings` (key = device id) is either one reading object or a gateway batch
envelope `{"readings": [reading, ...]}`:

    {"device_id": "dev-0001", "ts": 1764240000.25, "seq": 17, "v": 1,
     "metrics": {"temperature": 21.5, "humidity": 40.2},
     "site": "plant-a", "device_type": "pump", "sent_at": 1764240000.26}

`ts` may also be an ISO-8601 string with a timezone. `sent_at` is the producer's scheduled send
time (wall clock); it is carried forward so end-to-end latency can be measured honestly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

__all__ = [
    "SCHEMA_VERSION",
    "AlertDriver",
    "AnomalyAlert",
    "ComparedRow",
    "DeadLetter",
    "MaintenanceEvent",
    "ModelComparison",
    "Prediction",
    "SensorReading",
]

SCHEMA_VERSION = 1


class SensorReading(msgspec.Struct, frozen=True, gc=False):
    """One validated reading of one device: any number of named numeric metrics.

    A frozen msgspec struct rather than a frozen dataclass: one is made per reading on the hot
    path, and the dataclass's `__init__` (an `object.__setattr__` per field) measured 1.6 µs
    against 0.17 µs here. Copy with `msgspec.structs.replace`. Not tracked by the garbage
    collector (`gc=False`): it holds strings, numbers and a dict of floats, never a cycle."""

    device_id: str
    ts: float
    seq: int
    metrics: dict[str, float]
    site: str | None = None
    device_type: str | None = None
    schema_version: int = SCHEMA_VERSION
    sent_at: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "device_id": self.device_id,
            "ts": self.ts,
            "seq": self.seq,
            "v": self.schema_version,
            "metrics": self.metrics,
        }
        if self.site is not None:
            wire["site"] = self.site
        if self.device_type is not None:
            wire["device_type"] = self.device_type
        if self.sent_at is not None:
            wire["sent_at"] = self.sent_at
        return wire


@dataclass(slots=True, frozen=True)
class Prediction:
    """Exactly one per valid reading: its anomaly score and failure probability.

    `failure_prob` is the probability that the device fails within the failure model's horizon
    (see the model manifest), or None when no failure model applies to the device (it does not
    send the model's metrics; `failure_reason` says which). `models` maps role ->
    "model_id@version" for the models that scored this reading; `threshold` is the anomaly
    threshold in force for the device (`is_anomaly` = `anomaly_score > threshold`).
    """

    device_id: str
    ts: float
    seq: int
    anomaly_score: float
    failure_prob: float | None
    models: dict[str, str]
    late: bool = False
    is_anomaly: bool = False
    sent_at: float | None = None
    scored_at: float = 0.0
    threshold: float | None = None
    failure_reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "ts": self.ts,
            "seq": self.seq,
            "anomaly_score": self.anomaly_score,
            "failure_prob": self.failure_prob,
            "models": self.models,
            "late": self.late,
            "is_anomaly": self.is_anomaly,
            "sent_at": self.sent_at,
            "scored_at": self.scored_at,
            "threshold": self.threshold,
            "failure_reason": self.failure_reason,
        }


@dataclass(slots=True, frozen=True)
class AlertDriver:
    """One metric/feature that pushed the score over the threshold, and by how much."""

    metric: str
    feature: str
    value: float
    zscore: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "feature": self.feature,
            "value": self.value,
            "zscore": self.zscore,
        }


@dataclass(slots=True, frozen=True)
class AnomalyAlert:
    """One incident's lifecycle event: `open` once when it starts, `resolved` when it ends."""

    alert_id: str
    device_id: str
    state: Literal["open", "resolved"]
    severity: Literal["info", "warning", "critical"]
    ts: float
    opened_ts: float
    seq: int
    score: float
    threshold: float
    drivers: tuple[AlertDriver, ...] = ()
    site: str | None = None
    sent_at: float | None = None
    scored_at: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "state": self.state,
            "severity": self.severity,
            "ts": self.ts,
            "opened_ts": self.opened_ts,
            "seq": self.seq,
            "score": self.score,
            "threshold": self.threshold,
            "drivers": [d.to_wire() for d in self.drivers],
            "site": self.site,
            "sent_at": self.sent_at,
            "scored_at": self.scored_at,
        }


@dataclass(slots=True, frozen=True)
class MaintenanceEvent:
    """Delayed ground truth from the field: a device failed, or was repaired."""

    device_id: str
    ts: float
    kind: Literal["failure", "repair"]

    def to_wire(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "ts": self.ts, "kind": self.kind}


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """A record that could not be processed: the original bytes plus why and where from.

    On the DLQ topic the value is `original`, untouched; the rest travels in headers
    (`edgeml.origin.topic`, `.partition`, `.offset`, `edgeml.error.class`, `edgeml.error.reason`).
    """

    original: bytes
    error_class: str
    reason: str
    origin_topic: str = ""
    origin_partition: int = -1
    origin_offset: int = -1
    key: bytes | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("edgeml.origin.topic", self.origin_topic.encode()),
            ("edgeml.origin.partition", str(self.origin_partition).encode()),
            ("edgeml.origin.offset", str(self.origin_offset).encode()),
            ("edgeml.error.class", self.error_class.encode()),
            ("edgeml.error.reason", self.reason.encode()),
        ]
        headers.extend((f"edgeml.{k}", v.encode()) for k, v in self.extra.items())
        return headers


@dataclass(slots=True, frozen=True)
class ComparedRow:
    """One reading scored by the champion and, off the critical path, by the challenger
    (`challenger` None when the challenger failed on this batch)."""

    device_id: str
    seq: int
    ts: float
    champion: float
    challenger: float | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "seq": self.seq,
            "ts": self.ts,
            "champion": self.champion,
            "challenger": self.challenger,
        }


@dataclass(slots=True, frozen=True)
class ModelComparison:
    """One shadow-scored batch on `model-comparisons` (key = challenger ref): both models'
    refs and call latencies (seconds, whole batch) and one row per reading.
    `challenger_error` says why the challenger gave no scores (then `challenger_s` is how long
    it took to fail)."""

    champion: str
    challenger: str
    champion_s: float | None
    challenger_s: float | None
    scored_at: float
    rows: tuple[ComparedRow, ...]
    challenger_error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "champion_s": self.champion_s,
            "challenger_s": self.challenger_s,
            "scored_at": self.scored_at,
            "challenger_error": self.challenger_error,
            "rows": [r.to_wire() for r in self.rows],
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ModelComparison:
        """The record back from its wire dict; raises KeyError/TypeError/ValueError if malformed."""
        rows = tuple(
            ComparedRow(
                device_id=str(r["device_id"]),
                seq=int(r["seq"]),
                ts=float(r["ts"]),
                champion=float(r["champion"]),
                challenger=None if r["challenger"] is None else float(r["challenger"]),
            )
            for r in wire["rows"]
        )
        return cls(
            champion=str(wire["champion"]),
            challenger=str(wire["challenger"]),
            champion_s=None if wire.get("champion_s") is None else float(wire["champion_s"]),
            challenger_s=None if wire.get("challenger_s") is None else float(wire["challenger_s"]),
            scored_at=float(wire["scored_at"]),
            rows=rows,
            challenger_error=wire.get("challenger_error"),
        )
