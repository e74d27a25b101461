"""Benchmark metrics for a simulated run: pure functions over the ground truth and what came out.

Definitions (event time unless said otherwise):

- an incident is **detected** when an `open` alert of its device has `ts` in
  `[start_ts, end_ts + tolerance]`; **incident recall** = detected / incidents;
- **alert precision** = open alerts that fall in some incident window of their device
  (same rule) / all open alerts;
- **detection delay** = first matching open alert's `ts` - incident `start_ts`;
- a failure is **predicted** when a prediction of its device with `failure_prob >= threshold`
  has `ts` in `[failure_ts - horizon, failure_ts)`; the **lead time** is `failure_ts` - the first
  such prediction's `ts`; `failure_alarm_precision` = such predictions / all predictions with
  `failure_prob >= threshold`;
- **predictions per reading**: predictions are matched to readings by `(device_id, seq)`;
  `missing` readings have none, `duplicates` counts the extras, `unexpected` predictions match
  no reading of the run;
- **end-to-end latency** = the Kafka record timestamp of the prediction message (when the
  worker produced it) - the reading's `sent_at` (its scheduled send time), in milliseconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeml.sim.truth import GroundTruth, Incident

__all__ = [
    "AlertRecord",
    "Coverage",
    "EvaluationReport",
    "PredictionRecord",
    "alert_precision",
    "coverage",
    "detections",
    "evaluate",
    "failure_alarm_precision",
    "failure_lead_times",
    "latencies_ms",
    "percentile",
]


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """The fields of one prediction that evaluation needs, plus its message's arrival time."""

    device_id: str
    seq: int
    ts: float
    failure_prob: float
    anomaly_score: float = 0.0
    sent_at: float | None = None
    arrived_at: float | None = None  # Kafka record timestamp of the message, epoch seconds

    @classmethod
    def from_wire(
        cls, data: Mapping[str, Any], arrived_at: float | None = None
    ) -> PredictionRecord:
        sent_at = data.get("sent_at")
        return cls(
            device_id=str(data["device_id"]),
            seq=int(data["seq"]),
            ts=float(data["ts"]),
            failure_prob=float(data.get("failure_prob") or 0.0),  # null: no failure model
            anomaly_score=float(data.get("anomaly_score", 0.0)),
            sent_at=None if sent_at is None else float(sent_at),
            arrived_at=arrived_at,
        )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """The fields of one alert lifecycle event that evaluation needs."""

    device_id: str
    ts: float
    state: str = "open"

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> AlertRecord:
        return cls(str(data["device_id"]), float(data["ts"]), str(data.get("state", "open")))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _open_ts_by_device(alerts: Iterable[AlertRecord]) -> dict[str, list[float]]:
    by_device: dict[str, list[float]] = defaultdict(list)
    for alert in alerts:
        if alert.state == "open":
            by_device[alert.device_id].append(alert.ts)
    for times in by_device.values():
        times.sort()
    return by_device


def detections(
    incidents: Iterable[Incident], alerts: Iterable[AlertRecord], tolerance: float = 30.0
) -> dict[str, float | None]:
    """Incident id -> detection delay in seconds (None = not detected)."""
    opens = _open_ts_by_device(alerts)
    result: dict[str, float | None] = {}
    for incident in incidents:
        times = opens.get(incident.device_id, [])
        i = bisect_left(times, incident.start_ts)
        hit = i < len(times) and times[i] <= incident.end_ts + tolerance
        result[incident.incident_id] = times[i] - incident.start_ts if hit else None
    return result


def alert_precision(
    incidents: Iterable[Incident], alerts: Iterable[AlertRecord], tolerance: float = 30.0
) -> float | None:
    """Share of open alerts inside an incident window of their device; None without alerts."""
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for incident in incidents:
        windows[incident.device_id].append((incident.start_ts, incident.end_ts + tolerance))
    total = matched = 0
    for alert in alerts:
        if alert.state != "open":
            continue
        total += 1
        if any(lo <= alert.ts <= hi for lo, hi in windows.get(alert.device_id, ())):
            matched += 1
    return matched / total if total else None


def _failure_windows(
    incidents: Iterable[Incident], horizon: float
) -> dict[str, list[tuple[float, float]]]:
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for incident in incidents:
        if incident.failure_ts is not None:
            windows[incident.device_id].append((incident.failure_ts - horizon, incident.failure_ts))
    return windows


def failure_lead_times(
    incidents: Iterable[Incident],
    predictions: Iterable[PredictionRecord],
    threshold: float = 0.5,
    horizon: float = 900.0,
) -> dict[str, float | None]:
    """Failing incident id -> lead time in seconds of the first alarm (None = not predicted)."""
    failing = [i for i in incidents if i.failure_ts is not None]
    alarms: dict[str, list[float]] = defaultdict(list)
    for p in predictions:
        if p.failure_prob >= threshold:
            alarms[p.device_id].append(p.ts)
    for times in alarms.values():
        times.sort()
    result: dict[str, float | None] = {}
    for incident in failing:
        assert incident.failure_ts is not None
        times = alarms.get(incident.device_id, [])
        i = bisect_left(times, incident.failure_ts - horizon)
        hit = i < len(times) and times[i] < incident.failure_ts
        result[incident.incident_id] = incident.failure_ts - times[i] if hit else None
    return result


def failure_alarm_precision(
    incidents: Iterable[Incident],
    predictions: Iterable[PredictionRecord],
    threshold: float = 0.5,
    horizon: float = 900.0,
) -> float | None:
    """Share of predictions with `failure_prob >= threshold` that were within `horizon` before
    a failure of their device; None when there were no such predictions."""
    windows = _failure_windows(incidents, horizon)
    total = matched = 0
    for p in predictions:
        if p.failure_prob < threshold:
            continue
        total += 1
        if any(lo <= p.ts < hi for lo, hi in windows.get(p.device_id, ())):
            matched += 1
    return matched / total if total else None


@dataclass(frozen=True, slots=True)
class Coverage:
    """How predictions line up with the run's readings, matched by (device_id, seq)."""

    readings: int
    predictions: int  # all predictions of the run's devices, duplicates included
    matched: int  # readings with at least one prediction
    missing: int
    duplicates: int
    unexpected: int  # predictions matching no reading of the run

    @property
    def per_reading(self) -> float | None:
        return (self.predictions - self.unexpected) / self.readings if self.readings else None


def coverage(
    readings_per_device: Mapping[str, int], predictions: Iterable[PredictionRecord]
) -> Coverage:
    """Device `d` is expected to have seqs `0 .. readings_per_device[d] - 1`."""
    counts: Counter[tuple[str, int]] = Counter()
    unexpected = total = 0
    for p in predictions:
        total += 1
        if 0 <= p.seq < readings_per_device.get(p.device_id, 0):
            counts[(p.device_id, p.seq)] += 1
        else:
            unexpected += 1
    readings = sum(readings_per_device.values())
    return Coverage(
        readings=readings,
        predictions=total,
        matched=len(counts),
        missing=readings - len(counts),
        duplicates=sum(c - 1 for c in counts.values()),
        unexpected=unexpected,
    )


def latencies_ms(predictions: Iterable[PredictionRecord]) -> list[float]:
    """Per prediction: Kafka record timestamp of its message - the reading's sent_at, in ms."""
    return [
        (p.arrived_at - p.sent_at) * 1000.0
        for p in predictions
        if p.arrived_at is not None and p.sent_at is not None
    ]


@dataclass(slots=True)
class EvaluationReport:
    """Every benchmark number for one run; `to_dict()` is what `edgeml evaluate --json` prints."""

    coverage: Coverage
    incidents: int
    detected: int
    recall_by_kind: dict[str, float | None]
    alerts_open: int
    alert_precision: float | None
    delays: list[float]
    failures: int
    failures_predicted: int
    lead_times: list[float]
    failure_alarm_precision: float | None
    dlq: int
    dlq_expected: int
    dlq_by_class: dict[str, int]
    latencies_ms: list[float]
    settings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def r(value: float | None, digits: int = 4) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "readings": self.coverage.readings,
            "predictions": self.coverage.predictions,
            "missing": self.coverage.missing,
            "duplicates": self.coverage.duplicates,
            "unexpected": self.coverage.unexpected,
            "predictions_per_reading": r(self.coverage.per_reading),
            "incidents": self.incidents,
            "detected": self.detected,
            "incident_recall": r(self.detected / self.incidents if self.incidents else None),
            "incident_recall_by_kind": {k: r(v) for k, v in self.recall_by_kind.items()},
            "alerts_open": self.alerts_open,
            "alert_precision": r(self.alert_precision),
            "detection_delay_p50_s": r(percentile(self.delays, 50), 3),
            "detection_delay_p95_s": r(percentile(self.delays, 95), 3),
            "failures": self.failures,
            "failures_predicted": self.failures_predicted,
            "failures_predicted_ratio": r(
                self.failures_predicted / self.failures if self.failures else None
            ),
            "lead_time_p50_s": r(percentile(self.lead_times, 50), 3),
            "failure_alarm_precision": r(self.failure_alarm_precision),
            "dlq": self.dlq,
            "dlq_expected": self.dlq_expected,
            "dlq_by_class": dict(sorted(self.dlq_by_class.items())),
            "latency_ms": {
                "p50": r(percentile(self.latencies_ms, 50), 2),
                "p95": r(percentile(self.latencies_ms, 95), 2),
                "p99": r(percentile(self.latencies_ms, 99), 2),
                "samples": len(self.latencies_ms),
                "source": "Kafka record timestamp of the prediction message - reading sent_at",
            },
            "settings": self.settings,
        }


def evaluate(
    truth: GroundTruth,
    predictions: Sequence[PredictionRecord],
    alerts: Sequence[AlertRecord],
    *,
    dlq_by_class: Mapping[str, int] | None = None,
    tolerance: float = 30.0,
    threshold: float = 0.5,
    horizon: float = 900.0,
) -> EvaluationReport:
    """All metrics at once (see the module docstring for the definitions)."""
    detected = detections(truth.incidents, alerts, tolerance)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for incident in truth.incidents:
        by_kind[incident.kind].append(detected[incident.incident_id] is not None)
    leads = failure_lead_times(truth.incidents, predictions, threshold, horizon)
    dlq = dict(dlq_by_class or {})
    return EvaluationReport(
        coverage=coverage(truth.summary.readings_per_device, predictions),
        incidents=len(truth.incidents),
        detected=sum(d is not None for d in detected.values()),
        recall_by_kind={k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        alerts_open=sum(a.state == "open" for a in alerts),
        alert_precision=alert_precision(truth.incidents, alerts, tolerance),
        delays=[d for d in detected.values() if d is not None],
        failures=len(leads),
        failures_predicted=sum(v is not None for v in leads.values()),
        lead_times=[v for v in leads.values() if v is not None],
        failure_alarm_precision=failure_alarm_precision(
            truth.incidents, predictions, threshold, horizon
        ),
        dlq=sum(dlq.values()),
        dlq_expected=truth.summary.malformed,
        dlq_by_class=dlq,
        latencies_ms=latencies_ms(predictions),
        settings={"tolerance_s": tolerance, "threshold": threshold, "horizon_s": horizon},
    )
