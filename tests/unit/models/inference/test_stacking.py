"""Stacking learned online from delayed labels: the `Stacker`, the `stack` aggregation through
the engine, and the Scorer's delayed labels reaching it through `EngineFailureModel`."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeml.models.failure import failure_inputs
from edgeml.models.inference import (
    Aggregation,
    EngineFailureModel,
    EngineLoop,
    InferenceEngine,
    LowestLatency,
    TaskConfig,
)
from edgeml.models.inference.backends import SCORE, Signature, Tensors
from edgeml.models.inference.comparison import roc_auc
from edgeml.models.inference.stacking import Stacker, logit
from edgeml.models.inference.testing import ScriptedBackend, any_rows
from edgeml.models.manifest import ModelManifest
from edgeml.models.scoring import Scorer
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import MaintenanceEvent


def _synthetic(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One informative member (a noisy label) and one of pure noise; 10 % positives."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.1
    signal = 1.0 / (1.0 + np.exp(-(np.where(y, 1.5, -1.5) + rng.normal(0.0, 1.5, n))))
    return {"signal": signal, "noise": rng.random(n)}, y


def _cut(answers: dict[str, np.ndarray], rows: slice) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in answers.items()}


def test_learns_to_favour_the_informative_member_and_beats_the_mean():
    answers, y = _synthetic(6000, seed=3)
    stacker = Stacker(["signal", "noise"])
    for i in range(0, 3000, 25):  # labels arrive in small batches, as delayed labels do
        stacker.learn(_cut(answers, slice(i, i + 25)), y[i : i + 25])
    w = stacker.weights
    assert stacker.labels_seen == 3000 and stacker.positives == int(y[:3000].sum())
    assert w["signal"] > 0.8 and abs(w["noise"]) < 0.2 * w["signal"]
    held = _cut(answers, slice(3000, None))
    stacked = roc_auc(y[3000:], stacker.combine(held))
    mean = roc_auc(y[3000:], Aggregation("mean").combine(held))
    assert stacked > mean + 0.05, (stacked, mean)
    # calibrated: the mean score is near the positive rate, not the balanced 0.5
    assert abs(float(stacker.combine(held).mean()) - float(y[3000:].mean())) < 0.05


def test_cold_start_is_the_logit_mean():
    answers = {"a": np.array([0.9, 0.2, 1e-9]), "b": np.array([0.5, 0.2, 1.0])}
    cold = Stacker(["a", "b"]).combine(answers)
    z = (logit(answers["a"]) + logit(answers["b"])) / 2
    np.testing.assert_allclose(cold, 1.0 / (1.0 + np.exp(-z)))
    np.testing.assert_allclose(cold, Aggregation("stack").combine(answers))
    # with prior weights: the weighted logit-mean, as `Aggregation("stack", weights)` is
    agg = Aggregation("stack", weights={"a": 3.0})
    np.testing.assert_allclose(
        agg.new_stacker(["a", "b"]).combine(answers), agg.combine(answers), rtol=1e-12
    )
    assert Stacker(["a", "b"]).weights == {"a": 0.5, "b": 0.5}


def test_a_missing_member_is_imputed_and_unknown_names_are_ignored():
    s = Stacker(["a", "b", "c"])
    only_a = {"a": np.array([0.8]), "zzz": np.array([0.01])}
    assert s.combine(only_a).tolist() == pytest.approx([0.8])  # cold: a's logit for b and c
    assert s.combine({"zzz": np.array([0.3])}).tolist() == pytest.approx([0.3])
    assert s.learn({"zzz": np.array([0.3])}, [True]) == 0 and s.labels_seen == 0


def test_state_round_trips_and_learning_resumes_alike():
    answers, y = _synthetic(1200, seed=5)
    s = Stacker(["signal", "noise"], capacity=300)
    for i in range(0, 800, 40):
        s.learn(_cut(answers, slice(i, i + 40)), y[i : i + 40])
    back = Stacker.from_dict(json.loads(json.dumps(s.to_dict())))
    probe = _cut(answers, slice(800, None))
    np.testing.assert_array_equal(back.combine(probe), s.combine(probe))
    assert back.weights == s.weights and back.labels_seen == s.labels_seen == 800
    for t in (s, back):
        t.learn(_cut(answers, slice(800, 1000)), y[800:1000])
        t.refit()
    np.testing.assert_allclose(back.combine(probe), s.combine(probe), rtol=1e-12)
    light = Stacker.from_dict(s.to_dict(rows=False))  # weights and counts only
    assert light.weights == s.weights and light.labels_seen == s.labels_seen
    assert len(json.dumps(s.to_dict(rows=False))) < 1000
    with pytest.raises(ValueError, match="version"):
        Stacker.from_dict({"version": 99})


def test_memory_is_bounded_per_class():
    answers, y = _synthetic(5000, seed=7)
    s = Stacker(["signal", "noise"], capacity=64)
    for i in range(0, 5000, 500):
        s.learn(_cut(answers, slice(i, i + 500)), y[i : i + 500])
    state = s.to_dict()
    assert len(state["pos"]) == len(state["neg"]) == 64 and s.labels_seen == 5000
    assert s.weights["signal"] > s.weights["noise"]


def test_learning_and_combining_from_threads():
    answers, y = _synthetic(4000, seed=9)
    s = Stacker(["signal", "noise"])
    errors: list[BaseException] = []

    def feed(part: int) -> None:
        try:
            for i in range(part * 1000, (part + 1) * 1000, 20):
                s.learn(_cut(answers, slice(i, i + 20)), y[i : i + 20])
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    outs = []
    while any(t.is_alive() for t in threads):
        outs.append(s.combine(_cut(answers, slice(0, 50))))
    for t in threads:
        t.join()
    assert not errors and s.labels_seen == 4000
    assert all(np.isfinite(o).all() and ((o >= 0) & (o <= 1)).all() for o in outs)


# allow_subnormal=False: a native library loaded by other tests may flush subnormals to zero
finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 4),
    data=st.data(),
)
def test_output_is_finite_and_in_unit_interval(k: int, data: st.DataObject):
    names = [f"m{i}" for i in range(k)]
    n = data.draw(st.integers(1, 12))
    rows = st.lists(finite, min_size=n, max_size=n)
    train = {m: np.array(data.draw(rows)) for m in names}
    labels = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    s = Stacker(names, l2=data.draw(st.floats(1e-3, 1e3, allow_subnormal=False)), refit_every=1)
    s.learn(train, labels)
    probe = {m: np.array(data.draw(rows)) for m in names[: data.draw(st.integers(1, k))]}
    out = s.combine(probe)
    assert out.shape == (n,) and np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    assert all(np.isfinite(w) for w in s.weights.values()) and np.isfinite(s.bias)


# -- through the engine ---------------------------------------------------------------------

X = {"input": np.zeros((3, 2), np.float32)}


async def test_stack_through_the_engine_learns_from_engine_learn():
    a, b = ScriptedBackend("a", value=0.9), ScriptedBackend("b", value=0.2)
    engine = InferenceEngine()
    config = TaskConfig(strategy=LowestLatency(), aggregation=Aggregation("stack"))
    engine.add_task("t", [a, b], config)
    result = await engine.infer("t", X)
    z = (logit(np.array(0.9)) + logit(np.array(0.2))) / 2
    assert result.value.tolist() == pytest.approx([1 / (1 + np.exp(-z))] * 3)  # cold
    assert sorted(result.members) == ["a", "b"] and sorted(c.backend for c in result.answered) == [
        "a",
        "b",
    ]
    answers, y = _synthetic(600, seed=11)
    learned = engine.learn("t", {"a": answers["signal"], "b": answers["noise"]}, y)
    stacker = engine.tasks["t"].stacker
    assert learned == 600 and stacker is not None and stacker.labels_seen == 600
    assert stacker.weights["a"] > stacker.weights["b"]
    assert engine.status()["t"]["stack"]["labels"] == 600
    after = await engine.infer("t", X)
    assert after.value.tolist() == pytest.approx(
        stacker.combine({"a": np.full(3, 0.9), "b": np.full(3, 0.2)}).tolist()
    )
    # a replacement keeping the backend names keeps what was learned
    await engine.replace("t", [ScriptedBackend("a", value=0.5), ScriptedBackend("b", value=0.5)])
    assert engine.tasks["t"].stacker is stacker


async def test_other_aggregations_record_no_member_scores():
    engine = InferenceEngine()
    config = TaskConfig(aggregation=Aggregation("mean"))
    engine.add_task("t", [ScriptedBackend("a"), ScriptedBackend("b")], config)
    result = await engine.infer("t", X)
    assert result.ok and result.members == {} and engine.tasks["t"].stacker is None
    assert engine.learn("t", {"a": np.array([0.5])}, [True]) == 0


# -- delayed labels from the Scorer's label path -------------------------------------------------


@dataclass(eq=False)
class Column:
    """Scores sigmoid(x[:, col] * gain) and keeps every input it was called with."""

    name: str
    col: int
    gain: float = 1.0
    model_ref: str = ""
    signature: Signature = field(default_factory=any_rows)
    seen: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model_ref = self.model_ref or f"{self.name}@1"

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        x = np.asarray(inputs["input"], dtype=np.float64)
        self.seen.append(x.copy())
        await asyncio.sleep(0)
        return {SCORE: 1.0 / (1.0 + np.exp(-np.clip(x[:, self.col] * self.gain, -50, 50)))}

    async def close(self) -> None:
        return None


def _stack_adapter(*backends: Column) -> EngineFailureModel:
    engine = InferenceEngine()
    engine.add_task("failure", list(backends), TaskConfig(aggregation=Aggregation("stack")))
    names = failure_inputs()
    manifest = ModelManifest("m", "1", "onnx", "", "", names, ("score",), "", {}, 0, "")
    return EngineFailureModel(engine, "failure", manifest, EngineLoop())


def test_delayed_maintenance_labels_reach_the_stacker():
    a, b = Column("a", col=0), Column("b", col=1, gain=-1.0)
    model = _stack_adapter(a, b)
    try:
        scorer = Scorer(failure_model=model)
        assert scorer._label_sink is not None
        dev = [r for r in simulate(SimConfig(devices=1, count=1000, seed=5)).readings()]
        state = scorer.new_state(dev[0].device_id)
        scorer.score(state, dev[:900])
        buffered = [list(r) for r in state.rows]
        assert len(buffered) > 5 and model.stacker is not None
        # rows older than horizon + label delay were labelled negative meanwhile, and learned
        # with the batch's own failure-model call (it comes after the label buffer's update)
        aged = scorer.online.negatives
        assert aged > 0 and model.stacker.labels_seen == model.stacker.negatives == aged
        fail_ts = dev[899].ts + 1
        scorer.learn_maintenance(MaintenanceEvent(state.device_id, fail_ts, "failure"), state)
        labelled = [r for r in buffered if r[0] < fail_ts]
        expect_pos = sum(r[0] >= fail_ts - scorer.config.failure_horizon_s for r in labelled)
        assert 0 < expect_pos < len(labelled) and scorer.online.positives == expect_pos
        assert model.stacker.labels_seen == aged  # queued: learned with the next call
        calls = len(a.seen)
        out = scorer.score(state, dev[900:901])  # the next call carries the labelled rows
        assert len(a.seen) == calls + 1 and len(out) == 1 and 0.0 <= out[0].failure_prob <= 1.0
        assert model.stacker.labels_seen == aged + len(labelled)
        assert model.stacker.positives == expect_pos
        # the rows the members scored for the labels are the label buffer's rows
        want = scorer.failure_inputs.matrix([r[1:] for r in labelled])
        np.testing.assert_array_equal(a.seen[-1][-len(labelled) :], want)
        assert model.last is not None and len(model.last.value) == 1
        assert model.flush_labels() == 0  # nothing left queued
    finally:
        model.close()


def test_a_label_waits_when_nobody_answers_and_flush_learns_it():
    a = Column("a", col=0)
    model = _stack_adapter(a)
    try:
        model.learn_labels(np.ones((3, len(failure_inputs())), np.float32), [True, False, False])
        a_infer = a.infer

        async def broken(inputs: Tensors) -> dict[str, np.ndarray]:
            raise RuntimeError("down")

        a.infer = broken  # type: ignore[method-assign]
        assert np.isnan(model.predict(np.zeros((2, len(failure_inputs())), np.float32))).all()
        assert model.stacker is not None and model.stacker.labels_seen == 0
        a.infer = a_infer  # type: ignore[method-assign]
        model.engine.tasks["failure"].members[0].health.breaker.reset()
        assert model.flush_labels() == 3 and model.stacker.positives == 1
    finally:
        model.close()


def test_no_label_sink_without_stack():
    engine = InferenceEngine()
    engine.add_task("failure", [ScriptedBackend("a")], TaskConfig(aggregation=Aggregation("max")))
    manifest = ModelManifest("m", "1", "onnx", "", "", ("a", "b"), ("score",), "", {}, 0, "")
    model = EngineFailureModel(engine, "failure", manifest, EngineLoop())
    try:
        assert model.label_sink() is None and model.stacker is None
    finally:
        model.close()
