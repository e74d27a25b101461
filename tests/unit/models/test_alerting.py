"""Alert lifecycle: one `open` and one `resolved` per incident, no storm, deterministic ids."""

from __future__ import annotations

import pytest

from edgeml.models.alerting import AlertPolicy, AlertState, severity_of
from edgeml.topics.records import AlertDriver, AnomalyAlert

T0 = 1_767_225_600.0
DRIVERS = (AlertDriver("vibration", "fast", 9.1, 12.0),)


def _run(policy: AlertPolicy, scores: list[float], threshold: float = 0.5) -> list[AnomalyAlert]:
    state = AlertState()
    alerts = []
    for seq, score in enumerate(scores):
        alert = policy.update(
            state,
            device_id="dev-1",
            ts=T0 + seq,
            seq=seq,
            score=score,
            threshold=threshold,
            is_anomaly=score > threshold,
            drivers=lambda: DRIVERS,
        )
        if alert is not None:
            alerts.append(alert)
    return alerts


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("single-spike", [0.1] * 50 + [0.9] + [0.1] * 100),
        ("long-incident", [0.1] * 50 + [0.8] * 200 + [0.1] * 100),
        ("flickering", [0.1] * 50 + [0.9, 0.2, 0.1, 0.7, 0.1, 0.1, 0.95, 0.3] * 10 + [0.1] * 100),
        ("hovering-at-threshold", [0.1] * 50 + [0.55, 0.45, 0.4, 0.52] * 40 + [0.1] * 100),
    ],
)
def test_one_open_one_resolved_per_incident(name: str, pattern: list[float]):
    alerts = _run(AlertPolicy(), pattern)
    assert [a.state for a in alerts] == ["open", "resolved"], name
    opened, resolved = alerts
    assert opened.alert_id == resolved.alert_id == "dev-1:50"
    assert opened.opened_ts == resolved.opened_ts == T0 + 50
    assert opened.drivers == DRIVERS
    assert resolved.ts - opened.ts >= AlertPolicy().resolve_after_s


def test_two_incidents_give_two_alert_pairs_with_distinct_ids():
    alerts = _run(AlertPolicy(), [0.1] * 20 + [0.9] * 5 + [0.1] * 100 + [0.9] * 5 + [0.1] * 60)
    assert [a.state for a in alerts] == ["open", "resolved", "open", "resolved"]
    assert alerts[0].alert_id != alerts[2].alert_id


def test_replay_gives_identical_alerts():
    pattern = [0.1] * 20 + [0.9] * 5 + [0.1] * 100
    assert _run(AlertPolicy(), pattern) == _run(AlertPolicy(), pattern)


def test_open_after_debounces():
    policy = AlertPolicy(open_after=3)
    assert _run(policy, [0.1] * 10 + [0.9, 0.9] + [0.1] * 60) == []
    assert [a.state for a in _run(policy, [0.1] * 10 + [0.9] * 3 + [0.1] * 60)] == [
        "open",
        "resolved",
    ]


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.55, "info"), (0.7, "warning"), (0.85, "critical"), (0.99, "critical")],
)
def test_severity_from_excess_over_threshold(score: float, expected: str):
    assert severity_of(score, 0.5, 0.25, 0.6) == expected


def test_resolved_carries_worst_severity_and_state_round_trips():
    alerts = _run(AlertPolicy(), [0.1] * 10 + [0.55, 0.99, 0.6] + [0.1] * 60)
    assert alerts[0].severity == "info"
    assert alerts[1].severity == "critical"
    assert alerts[1].score == pytest.approx(0.99)
    state = AlertState(open=True, alert_id="d:3", drivers=DRIVERS, incidents=2)
    assert AlertState.from_obj(state.to_obj()) == state


def test_policy_validation():
    with pytest.raises(ValueError):
        AlertPolicy(open_after=0)
    with pytest.raises(ValueError):
        AlertPolicy(warning_at=0.9, critical_at=0.5)
