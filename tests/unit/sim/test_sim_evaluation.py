"""Evaluation metrics on tiny hand-made cases."""

from __future__ import annotations

import pytest

from edgeml.sim.evaluation import (
    AlertRecord,
    PredictionRecord,
    alert_precision,
    coverage,
    detections,
    evaluate,
    failure_alarm_precision,
    failure_lead_times,
    latencies_ms,
    percentile,
)
from edgeml.sim.truth import GroundTruth, Incident, RunSummary


def _incident(
    iid: str, device: str, start: float, end: float, failure: float | None = None
) -> Incident:
    return Incident(
        incident_id=iid,
        device_id=device,
        kind="degradation" if failure is not None else "spike",
        start_ts=start,
        end_ts=end,
        metrics=("vibration",),
        start_seq=int(start),
        end_seq=int(end),
        magnitude=1.0,
        failure_ts=failure,
        repair_ts=None if failure is None else end,
    )


INCIDENTS = [
    _incident("a#0", "a", 100.0, 110.0),
    _incident("a#1", "a", 500.0, 900.0, failure=800.0),
    _incident("b#0", "b", 200.0, 200.0),
]


def _pred(device: str, seq: int, ts: float, prob: float = 0.0, **kw: float) -> PredictionRecord:
    return PredictionRecord(device_id=device, seq=seq, ts=ts, failure_prob=prob, **kw)


def test_detection_and_precision() -> None:
    alerts = [
        AlertRecord("a", 95.0),  # before the incident: false positive
        AlertRecord("a", 104.0),  # detects a#0 after 4 s
        AlertRecord("a", 112.0, "resolved"),  # resolved events are ignored
        AlertRecord("b", 225.0),  # within tolerance 30 after b#0 ends
        AlertRecord("c", 300.0),  # unknown device: false positive
    ]
    assert detections(INCIDENTS, alerts, tolerance=30.0) == {"a#0": 4.0, "a#1": None, "b#0": 25.0}
    assert detections(INCIDENTS, alerts, tolerance=10.0)["b#0"] is None
    assert alert_precision(INCIDENTS, alerts, tolerance=30.0) == pytest.approx(2 / 4)
    assert alert_precision(INCIDENTS, [], tolerance=30.0) is None


def test_failure_lead_time_and_alarm_precision() -> None:
    predictions = [
        _pred("a", 1, 100.0, 0.9),  # far before the horizon: a false alarm
        _pred("a", 2, 300.0, 0.4),  # in the horizon but under the threshold
        _pred("a", 3, 350.0, 0.6),  # first alarm in [800-600, 800): lead 450
        _pred("a", 4, 700.0, 0.95),
        _pred("a", 5, 850.0, 0.99),  # after the failure: not a prediction of it
    ]
    assert failure_lead_times(INCIDENTS, predictions, threshold=0.5, horizon=600.0) == {
        "a#1": 450.0
    }
    assert failure_lead_times(INCIDENTS, predictions, threshold=0.97, horizon=600.0) == {
        "a#1": None
    }
    assert failure_alarm_precision(INCIDENTS, predictions, 0.5, 600.0) == pytest.approx(2 / 4)


def test_coverage_missing_duplicates_unexpected() -> None:
    predictions = [
        _pred("a", 0, 1.0),
        _pred("a", 0, 1.0),  # duplicate
        _pred("a", 2, 3.0),
        _pred("b", 0, 1.0),
        _pred("b", 7, 8.0),  # b only sent 2 readings
        _pred("z", 0, 1.0),  # not a device of the run
    ]
    cov = coverage({"a": 3, "b": 2}, predictions)
    assert (cov.readings, cov.predictions, cov.matched) == (5, 6, 3)
    assert (cov.missing, cov.duplicates, cov.unexpected) == (2, 1, 2)
    assert cov.per_reading == pytest.approx(4 / 5)


def test_latency_and_percentiles() -> None:
    predictions = [
        _pred("a", 0, 1.0, sent_at=10.0, arrived_at=10.05),
        _pred("a", 1, 2.0, sent_at=11.0, arrived_at=11.25),
        _pred("a", 2, 3.0, sent_at=None, arrived_at=12.0),
    ]
    assert latencies_ms(predictions) == pytest.approx([50.0, 250.0])
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(range(101)), 95) == 95.0


def test_evaluate_report_keys() -> None:
    summary = RunSummary(
        seed=0,
        start_ts=0.0,
        end_ts=1000.0,
        interval=1.0,
        readings_per_device={"a": 2, "b": 1},
        malformed_by_kind={"bad_json": 2},
    )
    truth = GroundTruth(summary, tuple(INCIDENTS))
    predictions = [
        _pred("a", 0, 1.0, sent_at=1.0, arrived_at=1.01),
        _pred("a", 1, 2.0),
        _pred("b", 0, 1.0),
    ]
    report = evaluate(
        truth, predictions, [AlertRecord("a", 101.0)], dlq_by_class={"InvalidJson": 2}
    ).to_dict()
    for key in (
        "readings",
        "predictions",
        "missing",
        "duplicates",
        "predictions_per_reading",
        "incident_recall",
        "alert_precision",
        "detection_delay_p50_s",
        "detection_delay_p95_s",
        "failures_predicted_ratio",
        "dlq",
        "latency_ms",
    ):
        assert key in report
    assert report["readings"] == 3 and report["missing"] == 0
    assert report["predictions_per_reading"] == 1.0
    assert report["incident_recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["incident_recall_by_kind"] == {"degradation": 0.0, "spike": 0.5}
    assert report["alert_precision"] == 1.0
    assert report["detection_delay_p50_s"] == 1.0
    assert report["failures_predicted_ratio"] == 0.0
    assert report["dlq"] == 2 and report["dlq_expected"] == 2
    assert report["latency_ms"]["p50"] == pytest.approx(10.0)
