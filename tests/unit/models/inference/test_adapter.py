"""`EngineFailureModel`: what the Scorer needs of a failure-model handle, through the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeml.models.inference import (
    EngineFailureModel,
    EngineLoop,
    InferenceEngine,
    InferenceError,
    TaskConfig,
    Weighted,
)
from edgeml.models.inference.testing import ScriptedBackend
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.scoring import Scorer
from edgeml.models.shipped import seed_registry
from edgeml.sim.generator import SimConfig, simulate


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


@pytest.fixture
def adapter(registry: ModelRegistry):
    model = EngineFailureModel.from_registry(registry, replicas=2)
    yield model
    model.close()


def test_predict_equals_the_registry_handle(registry, adapter):
    handle = registry.promoted_handle()
    x, _ = registry.holdout("failure-gbm")
    np.testing.assert_array_equal(adapter.predict(x[:300]), handle.predict(x[:300]))
    np.testing.assert_array_equal(adapter.predict(x[0]), handle.predict(x[:1]))  # one row
    assert adapter.ref == handle.ref and adapter.manifest.inputs == handle.current.manifest.inputs
    assert adapter.last is not None and adapter.last.ok and len(adapter.last.calls) == 1


def test_the_scorer_scores_the_same_through_the_engine(registry, adapter):
    readings = list(simulate(SimConfig(devices=2, count=400, seed=5)).readings())
    direct = Scorer(failure_model=registry.promoted_handle())
    engine = Scorer(failure_model=adapter)
    assert engine.failure_inputs.names == direct.failure_inputs.names
    assert engine.model_ids["failure"] == direct.model_ids["failure"]
    states_a = {r.device_id: direct.new_state(r.device_id) for r in readings}
    states_b = {r.device_id: engine.new_state(r.device_id) for r in readings}
    got_a, got_b = [], []
    for i in range(0, len(readings), 50):
        chunk = readings[i : i + 50]
        for d in sorted({r.device_id for r in chunk}):
            rs = [r for r in chunk if r.device_id == d]
            got_a += [s.failure_prob for s in direct.score(states_a[d], rs)]
            got_b += [s.failure_prob for s in engine.score(states_b[d], rs)]
    assert got_a == got_b and any(p > 0 for p in got_a)


def _adapter_over(*backends, on_down="nan", **config) -> EngineFailureModel:
    engine = InferenceEngine()
    weights = {b.name: 1e6 / 1000**i for i, b in enumerate(backends)}
    engine.add_task("failure", list(backends), TaskConfig(strategy=Weighted(weights), **config))
    runner = EngineLoop()
    from edgeml.models.manifest import ModelManifest

    manifest = ModelManifest("m", "1", "onnx", "", "", ("a", "b"), ("score",), "", {}, 0, "")
    return EngineFailureModel(engine, "failure", manifest, runner, on_down=on_down)


def test_all_down_gives_nan_rows_and_keeps_the_reason():
    model = _adapter_over(ScriptedBackend("a", mode="raise"), ScriptedBackend("b", mode="nan"))
    try:
        out = model.predict(np.zeros((3, 2), np.float32))
        assert out.shape == (3,) and np.isnan(out).all()
        assert (
            model.down_calls == 1 and "every backend of task 'failure' failed" in model.last.reason
        )
        assert model.ref == "m@1"
    finally:
        model.close()


def test_on_down_raise():
    model = _adapter_over(ScriptedBackend("a", mode="raise"), on_down="raise")
    try:
        with pytest.raises(InferenceError, match="scripted to fail"):
            model.predict(np.zeros((1, 2), np.float32))
    finally:
        model.close()


def test_a_hung_backend_costs_at_most_the_deadline():
    hung, ok = ScriptedBackend("hung", mode="hang"), ScriptedBackend("ok", value=0.3)
    model = _adapter_over(hung, ok, timeout_s=0.05, deadline_s=2.0)
    try:
        out = model.predict(np.zeros((2, 2), np.float32))
        assert out.tolist() == [0.3, 0.3] and model.ref == "ok@1"
        hung.mode = ok.mode = "hang"
        out = model.predict(np.zeros((2, 2), np.float32))  # returns: both calls timed out
        assert np.isnan(out).all()
        assert [c.error.startswith("timed out") for c in model.last.calls] == [True, True]
    finally:
        model.close()


def test_engine_loop_refuses_to_deadlock():
    runner = EngineLoop()
    try:

        async def inner() -> None:
            async def noop() -> None:
                return None

            runner.run(noop())

        with pytest.raises(RuntimeError, match="deadlock"):
            runner.run(inner(), timeout=2.0)
    finally:
        runner.stop()


def _register_copy(registry: ModelRegistry, tmp_path: Path) -> str:
    """The next version of failure-gbm: the promoted graph and holdout, registered again."""
    v1 = registry.manifest("failure-gbm")
    folder = registry.version_dir("failure-gbm", v1.version)
    holdout = tmp_path / "holdout.npz"
    x, y = registry.holdout("failure-gbm")
    np.savez(holdout, X=x, y=y)
    manifest = registry.register(
        "failure-gbm",
        folder / v1.file,
        kind="onnx",
        inputs=v1.inputs,
        training_data="copy of the promoted version",
        metrics=dict(v1.metrics),
        holdout=holdout,
        measure_latency=False,
    )
    return manifest.version


def test_hot_swap_to_an_announced_version(registry, adapter, tmp_path):
    from edgeml.models.manifest import ModelAnnouncement, TamperedArtifact

    version = _register_copy(registry, tmp_path)
    x, _ = registry.holdout("failure-gbm")
    old_backends = [m.backend for m in adapter.engine.tasks["failure"].members]
    forged = ModelAnnouncement("failure-gbm", version, "0" * 64)
    with pytest.raises(TamperedArtifact):
        adapter.apply(forged, registry)
    assert adapter.ref == "failure-gbm@2"
    assert not adapter.apply(ModelAnnouncement("other-model", "1", "0" * 64), registry)
    assert adapter.apply(registry.announcement("failure-gbm", version), registry)
    assert not adapter.apply(registry.announcement("failure-gbm", version), registry)  # served
    np.testing.assert_array_equal(
        adapter.predict(x[:50]), registry.promoted_handle().predict(x[:50])
    )
    assert adapter.ref == f"failure-gbm@{version}" and adapter.manifest.version == version
    members = adapter.engine.tasks["failure"].members
    assert len(members) == 2 and all(m.backend.model_ref == adapter.ref for m in members)
    assert all(b not in [m.backend for m in members] for b in old_backends)


async def test_replace_keeps_the_old_backends_when_no_new_one_passes_its_probe():
    from edgeml.models.inference import GoldenSet

    golden = GoldenSet({"input": np.zeros((2, 2), np.float32)}, {"score": np.full(2, 0.5)})
    old = ScriptedBackend("old", value=0.5)
    engine = InferenceEngine()
    engine.add_task("t", [old], TaskConfig(probe_interval_s=0), golden=golden)
    with pytest.raises(InferenceError, match="no new backend passed its probe"):
        await engine.replace("t", [ScriptedBackend("new", value=0.9)])
    assert [m.backend.name for m in engine.tasks["t"].members] == ["old"] and not old.closed
    await engine.replace("t", [ScriptedBackend("new2", value=0.5)])
    assert [m.backend.name for m in engine.tasks["t"].members] == ["new2"] and old.closed
