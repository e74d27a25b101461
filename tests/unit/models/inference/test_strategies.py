"""Selection strategies, deterministic with a seeded RNG; shares measured over 10,000 picks."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from edgeml.models.inference import (
    BackendHealth,
    BestQuality,
    CircuitBreaker,
    InferenceEngine,
    LeastLoaded,
    LowestLatency,
    Member,
    Route,
    TaskConfig,
    Weighted,
    strategy_named,
)
from edgeml.models.inference.testing import ScriptedBackend, any_rows


def member(name: str, *, ewma: float | None = None, in_flight: int = 0, **kw) -> Member:
    m = Member(ScriptedBackend(name, **kw), BackendHealth(CircuitBreaker()))
    if ewma is not None:
        m.health.latency.add(ewma)
    m.health.in_flight = in_flight
    return m


def names(members: list[Member]) -> list[str]:
    return [m.backend.name for m in members]


def first_shares(strategy, members, n: int = 10_000, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    counts = Counter(strategy.order(members, rng)[0].backend.name for _ in range(n))
    return {m.backend.name: counts[m.backend.name] / n for m in members}


def test_lowest_latency_measures_unmeasured_first_then_fastest():
    ms = [member("slow", ewma=0.030), member("fast", ewma=0.001), member("new")]
    assert names(LowestLatency().order(ms, random.Random(0))) == ["new", "fast", "slow"]


def test_best_quality_uses_the_recorded_holdout_metric():
    ms = [
        member("unknown", ewma=0.001),
        member("good", metadata={"quality": 0.95}, ewma=0.005),
        member("better", metadata={"quality": 0.98}, ewma=0.009),
    ]
    assert names(BestQuality().order(ms, random.Random(0))) == ["better", "good", "unknown"]


def test_least_loaded_power_of_two_choices():
    ms = [member("idle"), member("busy1", in_flight=5), member("busy2", in_flight=5)]
    shares = first_shares(LeastLoaded(), ms)
    # "idle" is first whenever it is one of the two sampled: 2 of the 3 pairs
    assert shares["idle"] == pytest.approx(2 / 3, abs=0.02)
    two = [member("a", in_flight=1), member("b", in_flight=0)]
    assert first_shares(LeastLoaded(), two)["b"] == 1.0


async def test_least_loaded_keeps_in_flight_balanced_under_a_slowed_replica():
    slow = ScriptedBackend("slow", delay_s=0.05)
    fast = [ScriptedBackend(f"fast{i}", delay_s=0.001) for i in range(2)]
    engine = InferenceEngine(seed=3)
    engine.add_task("t", [slow, *fast], TaskConfig(strategy=LeastLoaded(), timeout_s=5.0))
    x = {"input": np.zeros((1, 2), np.float32)}
    import asyncio

    async def client() -> None:
        for _ in range(20):
            await engine.infer("t", x)

    await asyncio.gather(*(client() for _ in range(6)))
    assert slow.calls + sum(f.calls for f in fast) == 120
    assert slow.calls < min(f.calls for f in fast)  # p2c steers away from the slow one


def test_weighted_split_matches_the_weights():
    ms = [member("a"), member("b"), member("c")]
    shares = first_shares(Weighted({"a": 1.0, "b": 3.0, "c@1": 0.0}), ms)
    assert shares["a"] == pytest.approx(0.25, abs=0.015)
    assert shares["b"] == pytest.approx(0.75, abs=0.015)
    assert shares["c"] == 0.0  # weight by model ref
    order = Weighted({"a": 1.0, "b": 3.0, "c@1": 0.0}).order(ms, random.Random(1))
    assert set(names(order)) == {"a", "b", "c"}  # everyone stays a failover target


def test_seeded_choices_repeat():
    ms = [member("a"), member("b"), member("c")]
    one = [names(LeastLoaded().order(ms, r)) for r in [random.Random(5)] * 50]
    two = [names(LeastLoaded().order(ms, r)) for r in [random.Random(5)] * 50]
    assert one == two


def test_route_prefers_the_most_specific_signature():
    generic = member("generic", signature=any_rows(width=-1))
    exact = member("exact", signature=any_rows(width=29), ewma=0.5)
    assert names(Route().order([generic, exact], random.Random(0))) == ["exact", "generic"]


def test_strategy_named():
    assert strategy_named("best_quality").name == "best_quality"
    assert strategy_named("weighted", weights={"a": 2}).name == "weighted"
    with pytest.raises(ValueError, match="choose one of: lowest_latency"):
        strategy_named("fastest")
    with pytest.raises(ValueError, match="only apply"):
        strategy_named("route", weights={"a": 1})
