"""Load balancing over 10,000 calls (issue #14): each strategy's shares through the engine, and
power of two choices under a 10x slower replica, in virtual time (bench/inference_balance.py;
deterministic for a seed, so nothing here depends on this machine's timing)."""

from __future__ import annotations

import pytest

from bench.inference_balance import p2c_under_a_slow_replica, shares


def test_weighted_shares_follow_the_configured_weights() -> None:
    got = shares("weighted")["shares"]
    # 10,000 draws: one standard deviation of a 0.7 share is 0.0046; 0.02 is over 4
    assert got == pytest.approx({"a": 0.1, "b": 0.2, "c": 0.7}, abs=0.02)


@pytest.mark.parametrize("strategy", ["best_quality", "route"])
def test_deterministic_strategies_send_every_call_to_their_pick(strategy: str) -> None:
    assert shares(strategy, calls=2_000)["shares"] == {"a": 0.0, "b": 1.0, "c": 0.0}


def test_least_loaded_with_nothing_in_flight_is_uniform() -> None:
    got = shares("least_loaded")["shares"]
    assert got == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=0.02)


def test_p2c_keeps_in_flight_balanced_under_a_slowed_replica() -> None:
    f = p2c_under_a_slow_replica(clients=20, calls=10_000, seed=0)
    assert sum(f.calls.values()) == sum(f.uniform_calls.values()) == 10_000
    # a uniform split gives the slow replica a third of the calls and piles callers on it
    assert f.uniform_calls["slow"] > 3_000
    fast_peak = max(f.uniform_peak_in_flight["fast0"], f.uniform_peak_in_flight["fast1"])
    assert f.uniform_peak_in_flight["slow"] > fast_peak
    # p2c: the slow one gets far fewer calls, and no more in flight than a fast one
    assert f.calls["slow"] < f.uniform_calls["slow"] / 3
    assert f.peak_in_flight["slow"] <= max(f.peak_in_flight["fast0"], f.peak_in_flight["fast1"])
    assert f.p2c_makespan_s < f.uniform_makespan_s
    assert p2c_under_a_slow_replica(seed=0) == f  # the same figures every run
