"""What one scored batch puts in the outbox: the edge's predictions, alerts and raw readings.

Built from the facts in `BatchResult` (the scored readings and the alert records as sent), not
by parsing the pipeline's output bytes. Predictions and alerts are the platform's own records
(`Prediction`, `AnomalyAlert` wire form, so every consumer of the worker's topics reads them)
with three fields added: `origin: "edge"`, `agent_id` and `model_version` (the failure model's
"id@version", or the anomaly model's when there is no offline one). One prediction per reading
(the edge never sends `{"predictions": [...]}` envelopes), key = device id, event time kept in
`ts` (and as the Kafka timestamp, `edge.sync`).

Raw readings (`raw=on`, or every `raw_every`-th seq with `downsample`) are the reading's plain
wire form, so the worker's validation accepts them on `sensor-readings`; their origin travels in
the Kafka headers only. Forwarding them to the worker's input topic makes the worker score them
again: docs/edge.md says when that is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from edgeml.edge.outbox import OutboxRecord
from edgeml.models.pipeline import BatchResult, prediction_wire
from edgeml.topics.records import AnomalyAlert

__all__ = ["RecordOptions", "alert_record", "batch_records", "edge_fields", "model_version"]


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """Who the records are from and which raw readings to keep."""

    agent_id: str
    raw: str = "off"  # off | on | downsample
    raw_every: int = 10

    def __post_init__(self) -> None:
        if self.raw not in ("off", "on", "downsample"):
            raise ValueError(f"raw must be 'off', 'on' or 'downsample', got {self.raw!r}")
        if self.raw_every < 1:
            raise ValueError(f"raw_every must be >= 1, got {self.raw_every}")

    def keeps_raw(self, seq: int) -> bool:
        if self.raw == "on":
            return True
        return self.raw == "downsample" and seq % self.raw_every == 0


def model_version(model_ids: dict[str, str]) -> str:
    """The version a prediction carries: the offline failure model's, else the anomaly one's."""
    return model_ids.get("failure") or model_ids.get("anomaly", "")


def edge_fields(options: RecordOptions, version: str) -> dict[str, Any]:
    return {"origin": "edge", "agent_id": options.agent_id, "model_version": version}


def batch_records(
    result: BatchResult,
    model_ids: dict[str, str],
    scored_at: float,
    options: RecordOptions,
) -> list[OutboxRecord]:
    """The outbox records of one batch, in scoring order: per reading its raw copy (if kept)
    and its prediction, then the alerts (the order the pipeline emitted them)."""
    version = model_version(model_ids)
    extra = edge_fields(options, version)
    records: list[OutboxRecord] = []
    for outcome in result.scored:
        reading = outcome.reading
        key = reading.device_id.encode()
        uid = f"{reading.device_id}:{reading.seq}"
        if options.keeps_raw(reading.seq):
            records.append(
                OutboxRecord(
                    "readings",
                    reading.device_id,
                    reading.seq,
                    uid,
                    key,
                    orjson.dumps(reading.to_wire()),
                    reading.ts,
                )
            )
        value = orjson.dumps({**prediction_wire(outcome, model_ids, scored_at), **extra})
        records.append(
            OutboxRecord("predictions", reading.device_id, reading.seq, uid, key, value, reading.ts)
        )
    for alert in result.alert_events:
        records.append(alert_record(alert, extra))
    return records


def alert_record(alert: AnomalyAlert, extra: dict[str, Any]) -> OutboxRecord:
    return OutboxRecord(
        "alerts",
        alert.device_id,
        alert.seq,
        f"{alert.alert_id}:{alert.state}",
        alert.device_id.encode(),
        orjson.dumps({**alert.to_wire(), **extra}),
        alert.ts,
    )
