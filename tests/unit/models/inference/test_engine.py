"""Failover, deadlines, all-down -> None with a reason, breakers, probes, input routing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edgeml.models.inference import (
    BreakerConfig,
    GoldenSet,
    InferenceEngine,
    LowestLatency,
    TaskConfig,
    Weighted,
)
from edgeml.models.inference.testing import ScriptedBackend, any_rows

X = {"input": np.zeros((4, 3), np.float32)}


def engine_with(*backends, **config) -> InferenceEngine:
    engine = InferenceEngine(seed=1)
    config.setdefault("strategy", Weighted({b.name: 10.0**-i for i, b in enumerate(backends)}))
    engine.add_task("t", list(backends), TaskConfig(**config))
    return engine


def first_choice(*backends, **config) -> InferenceEngine:
    """An engine that tries the backends in the order given (fixed weights 1e9, 1e6, ...)."""
    weights = {b.name: 1e9 / 1000**i for i, b in enumerate(backends)}
    return engine_with(*backends, strategy=Weighted(weights), **config)


async def test_failover_from_a_raising_backend():
    bad, good = ScriptedBackend("bad", mode="raise"), ScriptedBackend("good", value=0.7)
    result = await first_choice(bad, good).infer("t", X)
    assert result.ok and result.value.tolist() == [0.7] * 4
    assert [(c.backend, c.ok) for c in result.calls] == [("bad", False), ("good", True)]
    assert "scripted to fail" in result.calls[0].error
    assert result.failovers == 1 and result.model_ref == "good@1"
    assert result.models()[1]["backend"] == "good" and "ms" in result.models()[1]


async def test_failover_from_a_hanging_backend_within_the_deadline():
    hang, good = ScriptedBackend("hang", mode="hang"), ScriptedBackend("good", value=0.2)
    engine = first_choice(hang, good, timeout_s=0.05, deadline_s=5.0)
    result = await engine.infer("t", X)
    assert result.ok and result.calls[0].error.startswith("timed out")
    assert engine.tasks["t"].members[0].health.timeouts == 1


@pytest.mark.parametrize("mode", ["raise", "hang", "nan", "short"])
async def test_every_backend_down_gives_none_and_a_reason(mode):
    a, b = ScriptedBackend("a", mode=mode), ScriptedBackend("b", mode=mode)
    engine = first_choice(a, b, timeout_s=0.02, deadline_s=1.0)
    result = await engine.infer("t", X)
    assert result.value is None and not result.ok
    assert "every backend of task 't' failed" in result.reason
    assert "a: " in result.reason and "b: " in result.reason
    assert a.calls == 1 and b.calls == 1


async def test_the_deadline_bounds_the_failover_chain():
    backends = [ScriptedBackend(f"h{i}", mode="hang") for i in range(5)]
    engine = first_choice(*backends, timeout_s=0.05, deadline_s=0.12)
    result = await engine.infer("t", X)
    assert result.value is None and "deadline reached" in result.reason
    assert len(result.calls) < 5  # the deadline cut the chain short
    assert sum(b.calls for b in backends) == len(result.calls)


async def test_open_breaker_takes_a_backend_out_then_all_down_reason():
    bad, good = ScriptedBackend("bad", mode="raise"), ScriptedBackend("good")
    engine = first_choice(bad, good, breaker=BreakerConfig(failures=2, cooldown_s=3600))
    for _ in range(5):
        assert (await engine.infer("t", X)).ok
    assert bad.calls == 2  # opened after two failures: no call since
    assert engine.tasks["t"].members[0].health.breaker.state == "open"
    good.mode = "raise"
    for _ in range(2):
        await engine.infer("t", X)
    result = await engine.infer("t", X)
    assert result.value is None and "is down" in result.reason and result.calls == []
    assert bad.calls == 2 and good.calls == 5 + 2  # five answers, two failures, then none


async def test_unknown_task_and_bad_inputs_never_raise():
    engine = first_choice(ScriptedBackend("a"))
    assert "unknown task" in (await engine.infer("nope", X)).reason
    assert "no input" in (await engine.infer("t", {})).reason
    mixed = {"input": np.zeros((2, 3), np.float32), "other": np.zeros((3,), np.float32)}
    assert "row count" in (await engine.infer("t", mixed)).reason


async def test_backends_that_do_not_accept_the_inputs_are_never_called():
    narrow = ScriptedBackend("narrow", signature=any_rows(width=5))
    wide = ScriptedBackend("wide", signature=any_rows(width=3))
    engine = first_choice(narrow, wide)
    result = await engine.infer("t", X)
    assert result.ok and narrow.calls == 0 and [c.backend for c in result.calls] == ["wide"]
    refused = await engine.infer("t", {"input": np.zeros((2, 7), np.float32)})
    assert refused.value is None and "accepts these inputs" in refused.reason
    named = await engine.infer("t", {"x": np.zeros((2, 3), np.float32)})
    assert "needs input 'input'" in named.reason


async def test_probe_at_start_takes_a_wrong_model_out_and_a_passing_probe_brings_it_back():
    golden = GoldenSet({"input": np.zeros((4, 3), np.float32)}, {"score": np.full(4, 0.5)})
    wrong, right = ScriptedBackend("wrong", value=0.9), ScriptedBackend("right", value=0.5)
    engine = InferenceEngine(seed=0)
    engine.add_task(
        "t",
        [wrong, right],
        TaskConfig(strategy=LowestLatency(), probe_interval_s=0),
        golden=golden,
    )
    probes = await engine.start()
    assert [p.ok for p in probes["t"]] == [False, True]
    assert "differs" in probes["t"][0].reason
    for _ in range(3):
        result = await engine.infer("t", X)
        assert result.value.tolist() == [0.5] * 4
    assert wrong.calls == 1  # only the probe
    wrong.value = 0.5  # fixed: the next probe brings it back
    await engine.probe_task("t")
    assert engine.tasks["t"].members[0].health.healthy
    assert engine.status()["t"]["backends"]["wrong"]["state"] == "closed"
    await engine.close()
    assert wrong.closed and right.closed


async def test_interval_probes_run_until_close():
    golden = GoldenSet({"input": np.zeros((1, 3), np.float32)})
    a = ScriptedBackend("a")
    engine = InferenceEngine()
    engine.add_task("t", [a], TaskConfig(probe_interval_s=0.01), golden=golden)
    await engine.start()
    while a.calls < 4:  # noqa: ASYNC110 - the start probe, then three interval probes
        await asyncio.sleep(0.01)
    await engine.close()
    calls = a.calls
    await asyncio.sleep(0.05)
    assert a.calls == calls and engine.tasks["t"].prober is None


def test_task_config_and_pool_validation():
    with pytest.raises(ValueError, match="timeout_s"):
        TaskConfig(timeout_s=0)
    engine = InferenceEngine()
    with pytest.raises(ValueError, match="at least one backend"):
        engine.add_task("t", [])
    with pytest.raises(ValueError, match="unique"):
        engine.add_task("t", [ScriptedBackend("a"), ScriptedBackend("a")])
