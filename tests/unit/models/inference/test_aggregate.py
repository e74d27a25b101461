"""Aggregation: weighted mean, max, majority vote, and fan-out through the engine."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.models.inference import Aggregation, InferenceEngine, LowestLatency, TaskConfig
from edgeml.models.inference.testing import ScriptedBackend

ANSWERS = {
    "a": np.array([0.1, 0.6, 0.9]),
    "b": np.array([0.3, 0.2, 0.8]),
    "c": np.array([0.8, 0.7, 0.1]),
}
X = {"input": np.zeros((3, 2), np.float32)}


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        (Aggregation("mean"), [0.4, 0.5, 0.6]),
        (Aggregation("mean", weights={"a": 2.0, "b": 1.0, "c": 1.0}), [0.325, 0.525, 0.675]),
        (Aggregation("max"), [0.8, 0.7, 0.9]),
        (Aggregation("vote"), [0.0, 1.0, 1.0]),
        (Aggregation("vote", weights={"c": 3.0}), [1.0, 1.0, 0.0]),
        (Aggregation("vote", threshold=0.65), [0.0, 0.0, 1.0]),
    ],
)
def test_combine(agg, expected):
    assert agg.combine(ANSWERS).tolist() == pytest.approx(expected)


def test_vote_tie_goes_positive_and_weights_by_ref():
    two = {"x": np.array([0.9]), "y": np.array([0.1])}
    assert Aggregation("vote").combine(two).tolist() == [1.0]
    agg = Aggregation("mean", weights={"m@2": 3.0})
    assert agg.combine(two, {"x": "m@2", "y": "m@1"}).tolist() == pytest.approx([0.7])


def test_bad_aggregation():
    with pytest.raises(ValueError, match="choose one of: mean, max, vote"):
        Aggregation("median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing"):
        Aggregation().combine({})


async def test_engine_fans_out_and_records_who_answered():
    a, b = ScriptedBackend("a", value=0.2), ScriptedBackend("b", value=0.6)
    bad = ScriptedBackend("bad", mode="raise")
    engine = InferenceEngine()
    engine.add_task(
        "t", [a, b, bad], TaskConfig(strategy=LowestLatency(), aggregation=Aggregation("mean"))
    )
    result = await engine.infer("t", X)
    assert result.value.tolist() == pytest.approx([0.4] * 3)
    assert sorted(c.backend for c in result.answered) == ["a", "b"]
    assert {c.backend: c.ok for c in result.calls} == {"a": True, "b": True, "bad": False}
    assert result.model_ref == "a@1+b@1" and all(c.seconds >= 0 for c in result.calls)


async def test_fan_out_tops_up_from_the_rest_when_too_few_answer():
    # unmeasured backends are tried by name: a, bad (fails), then c tops up
    bad, a, b = ScriptedBackend("bad", mode="raise"), ScriptedBackend("a"), ScriptedBackend("c")
    engine = InferenceEngine()
    config = TaskConfig(
        strategy=LowestLatency(), aggregation=Aggregation("max", min_answers=2), fanout=2
    )
    engine.add_task("t", [a, bad, b], config)
    result = await engine.infer("t", X)
    assert result.ok and sorted(c.backend for c in result.answered) == ["a", "c"]
    assert [c.backend for c in result.calls] == ["a", "bad", "c"]
    assert a.calls == b.calls == bad.calls == 1


async def test_fan_out_without_enough_answers_is_none_with_reason():
    engine = InferenceEngine()
    bad = ScriptedBackend("bad", mode="raise")
    config = TaskConfig(aggregation=Aggregation("mean", min_answers=2))
    engine.add_task("t", [ScriptedBackend("a"), bad], config)
    result = await engine.infer("t", X)
    assert result.value is None and result.reason.startswith("1 of the 2 answers needed")
