"""`Metrics.observe_batch` counts alerts and dead letters from `BatchResult`'s facts, not from
the records to publish (which only the publisher reads)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from edgeml.app.metrics import Metrics
from edgeml.models.pipeline import BatchResult, Outbound, Rejected
from edgeml.topics.records import AnomalyAlert


def _alert(state: str, severity: str) -> AnomalyAlert:
    return AnomalyAlert("a-1", "dev-1", state, severity, 1.0, 1.0, 3, 0.9, 0.5, scored_at=2.0)  # type: ignore[arg-type]


def _samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == name
    }


def test_alerts_and_dead_letters_are_counted_from_the_facts() -> None:
    result = BatchResult(
        # a record that would say otherwise: metrics must not read it
        outbound=[Outbound("alerts", b"dev-1", b'{"state":"resolved","severity":"info"}')],
        alert_events=[_alert("open", "critical"), _alert("resolved", "critical")],
        rejections=[
            Rejected(0, "InvalidJson", "bad"),
            Rejected(1, "ScoringError", "RuntimeError: boom", 2),
            Rejected(1, "ScoringError", "RuntimeError: boom", 3),
        ],
        alerts=2,
        dead_letters=3,
    )
    metrics = Metrics("test")
    message = SimpleNamespace(topic="sensor-readings", time_in=time.monotonic())
    events = [SimpleNamespace(message=message), SimpleNamespace(message=message)]
    metrics.observe_batch(result, events)  # type: ignore[arg-type]
    assert _samples(metrics, "edgeml_alerts_total") == {
        (("severity", "critical"), ("state", "open")): 1.0,
        (("severity", "critical"), ("state", "resolved")): 1.0,
    }
    assert _samples(metrics, "edgeml_dead_letters_total") == {
        (("error_class", "InvalidJson"),): 1.0,
        (("error_class", "ScoringError"),): 2.0,
    }
