"""Circuit breaker transitions, latency EWMA / p99, error rate, golden-set checks."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.models.inference import BackendHealth, CircuitBreaker, GoldenSet, LatencyWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only():
    clock = FakeClock()
    b = CircuitBreaker(failures=3, cooldown_s=10.0, clock=clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # a success in between resets the count
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure("boom")
    assert b.state == "open" and b.reason == "boom" and b.opened == 1
    assert not b.allow() and not b.available()


def test_breaker_half_open_admits_one_trial_and_closes_on_success():
    clock = FakeClock()
    b = CircuitBreaker(failures=1, cooldown_s=10.0, clock=clock)
    b.record_failure()
    clock.now += 9.99
    assert not b.allow() and b.state == "open"
    clock.now += 0.01
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # the one trial slot is taken
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_breaker_half_open_failure_reopens_for_a_new_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failures=2, cooldown_s=5.0, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.now += 5.0
    assert b.allow()
    b.record_failure("still broken")  # one failure suffices when half-open
    assert b.state == "open" and b.opened == 2 and b.reason == "still broken"
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow() and b.state == "half_open"


def test_trip_and_reset_for_probes():
    b = CircuitBreaker(failures=5, cooldown_s=60.0, clock=FakeClock())
    b.trip("probe failed")
    assert b.state == "open" and not b.allow()
    b.reset()
    assert b.state == "closed" and b.reason == "" and b.allow()


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"cooldown_s": -1}, {"half_open_calls": 0}])
def test_breaker_rejects_bad_config(kwargs):
    with pytest.raises(ValueError, match="BreakerConfig"):
        CircuitBreaker(**kwargs)


def test_latency_ewma_and_p99():
    w = LatencyWindow(alpha=0.5, size=100)
    assert w.ewma is None and w.p99 is None
    for s in (1.0, 3.0):
        w.add(s)
    assert w.ewma == pytest.approx(2.0)
    for i in range(200):  # the window keeps only the last 100: 100..199 ms
        w.add(i / 1000)
    assert len(w.window) == 100
    assert w.p99 == pytest.approx(np.quantile(np.arange(100, 200) / 1000, 0.99))


def test_error_rate_and_health():
    h = BackendHealth(CircuitBreaker(failures=2, cooldown_s=1.0, clock=FakeClock()))
    h.success(0.01)
    h.failure("x")
    assert h.error_rate == pytest.approx(0.5) and h.healthy
    h.failure("timeout", timeout=True)
    assert not h.healthy and h.timeouts == 1 and h.errors == 2
    snap = h.snapshot()
    assert snap["state"] == "open" and snap["last_error"] == "timeout"


def test_golden_set_check():
    g = GoldenSet({"input": np.zeros((3, 2), np.float32)}, {"score": np.array([0.1, 0.2, 0.3])})
    assert g.check({"score": np.array([0.1, 0.2, 0.3000001])}, "score") is None
    assert "differs" in g.check({"score": np.array([0.1, 0.2, 0.4])}, "score")
    assert "rows" in g.check({"score": np.array([0.1, 0.2])}, "score")
    assert "non-finite" in g.check({"score": np.array([0.1, np.nan, 0.3])}, "score")
    assert "no output" in g.check({"label": np.array([0, 0, 1])}, "score")
