"""Ground truth of a simulated run: the labelled incident windows and a summary of what was sent.

Written by `edgeml simulate --ground-truth FILE` as JSON Lines and read back by `edgeml evaluate`:
the first line is the summary (`"type": "summary"`), every other line one incident
(`"type": "incident"`). The same objects go to the `ground-truth` topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

__all__ = [
    "FAULT_KINDS",
    "FaultKind",
    "GroundTruth",
    "Incident",
    "RunSummary",
]

FaultKind = Literal["spike", "level_shift", "drift", "stuck", "noise_burst", "degradation"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "noise_burst",
    "degradation",
)


@dataclass(slots=True, frozen=True)
class Incident:
    """One labelled fault on one device, in event time (epoch seconds, UTC).

    The window is `[start_ts, end_ts]`, the timestamps of the first and last affected readings.
    For `degradation` the window runs from the first degraded reading to the repair:
    `failure_ts` is when the device failed (a `MaintenanceEvent(kind="failure")` at that time)
    and `repair_ts` when it was repaired (`kind="repair"`); in between the machine stands still.
    `magnitude` is the fault's size in units of the metric's normal noise (sigma); for
    `noise_burst` the noise multiplier, for `degradation` the vibration growth factor.
    """

    incident_id: str
    device_id: str
    kind: FaultKind
    start_ts: float
    end_ts: float
    metrics: tuple[str, ...]
    start_seq: int
    end_seq: int
    magnitude: float
    failure_ts: float | None = None
    repair_ts: float | None = None
    site: str | None = None
    device_type: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "incident",
            "incident_id": self.incident_id,
            "device_id": self.device_id,
            "kind": self.kind,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "metrics": list(self.metrics),
            "start_seq": self.start_seq,
            "end_seq": self.end_seq,
            "magnitude": self.magnitude,
            "failure_ts": self.failure_ts,
            "repair_ts": self.repair_ts,
            "site": self.site,
            "device_type": self.device_type,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Incident:
        kind = data["kind"]
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown incident kind {kind!r}; valid: {', '.join(FAULT_KINDS)}")
        return cls(
            incident_id=str(data["incident_id"]),
            device_id=str(data["device_id"]),
            kind=kind,
            start_ts=float(data["start_ts"]),
            end_ts=float(data["end_ts"]),
            metrics=tuple(data.get("metrics") or ()),
            start_seq=int(data.get("start_seq", -1)),
            end_seq=int(data.get("end_seq", -1)),
            magnitude=float(data.get("magnitude", 0.0)),
            failure_ts=None if data.get("failure_ts") is None else float(data["failure_ts"]),
            repair_ts=None if data.get("repair_ts") is None else float(data["repair_ts"]),
            site=data.get("site"),
            device_type=data.get("device_type"),
        )


@dataclass(slots=True, frozen=True)
class RunSummary:
    """What a run sent: the valid readings (device `d` has seqs `0..readings_per_device[d]-1`),
    the malformed messages by kind, and the wall-clock time sending started
    (`evaluate` reads the output topics from that time on)."""

    seed: int
    start_ts: float
    end_ts: float
    interval: float
    readings_per_device: dict[str, int]
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    run_started_at: float = 0.0
    run_finished_at: float = 0.0
    topic: str = ""

    @property
    def readings(self) -> int:
        return sum(self.readings_per_device.values())

    @property
    def malformed(self) -> int:
        return sum(self.malformed_by_kind.values())

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "seed": self.seed,
            "devices": len(self.readings_per_device),
            "readings": self.readings,
            "malformed": self.malformed,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "interval": self.interval,
            "readings_per_device": dict(sorted(self.readings_per_device.items())),
            "malformed_by_kind": self.malformed_by_kind,
            "run_started_at": self.run_started_at,
            "run_finished_at": self.run_finished_at,
            "topic": self.topic,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RunSummary:
        return cls(
            seed=int(data["seed"]),
            start_ts=float(data["start_ts"]),
            end_ts=float(data["end_ts"]),
            interval=float(data["interval"]),
            readings_per_device={str(k): int(v) for k, v in data["readings_per_device"].items()},
            malformed_by_kind={
                str(k): int(v) for k, v in data.get("malformed_by_kind", {}).items()
            },
            run_started_at=float(data.get("run_started_at", 0.0)),
            run_finished_at=float(data.get("run_finished_at", 0.0)),
            topic=str(data.get("topic", "")),
        )


@dataclass(slots=True, frozen=True)
class GroundTruth:
    """A run's summary plus its incidents; round-trips through JSON Lines."""

    summary: RunSummary
    incidents: tuple[Incident, ...]

    @property
    def failures(self) -> tuple[Incident, ...]:
        return tuple(i for i in self.incidents if i.failure_ts is not None)

    def lines(self) -> Iterator[bytes]:
        """The JSONL lines (without newlines): summary first, then incidents by start time."""
        yield orjson.dumps(self.summary.to_wire())
        for incident in sorted(self.incidents, key=lambda i: (i.start_ts, i.device_id)):
            yield orjson.dumps(incident.to_wire())

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(line + b"\n" for line in self.lines()))

    @classmethod
    def parse(cls, lines: Iterable[bytes | str]) -> GroundTruth:
        summary: RunSummary | None = None
        incidents: list[Incident] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            data = orjson.loads(line)
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "summary":
                summary = RunSummary.from_wire(data)
            elif kind == "incident":
                incidents.append(Incident.from_wire(data))
            else:
                raise ValueError(f"line {number}: expected type summary or incident, got {kind!r}")
        if summary is None:
            raise ValueError("ground truth has no summary line")
        return cls(summary, tuple(incidents))

    @classmethod
    def read(cls, path: Path) -> GroundTruth:
        with path.open("rb") as handle:
            return cls.parse(handle)
