"""The failure task's pool from a configuration (`models.inference.pool`), and what the
pipeline publishes through it: the backends on every prediction, null + reason when all are
down."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from edgeml.models.inference import EngineFailureModel, TaskConfig, Weighted
from edgeml.models.inference.pool import BrokenBackend, PoolSpec
from edgeml.models.inference.testing import ScriptedBackend
from edgeml.models.pipeline import Inbound, ReadingPipeline
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.scoring import Scorer
from edgeml.models.shipped import seed_registry
from edgeml.sim.generator import SimConfig, simulate


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": -1}, "replicas must be >= 0"),
        ({"replicas": 0}, "needs in-process replicas or remote"),
        ({"remote": ("localhost:8000",)}, r"is not an http\(s\)://host:port URL"),
        ({"drills": ("explode",)}, "unknown fault drill"),
    ],
)
def test_bad_pool_specs_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolSpec(**kwargs)


def test_drills_and_a_dead_remote_join_the_pool_with_their_breakers_open(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    spec = PoolSpec(replicas=1, remote=(url,), drills=("raise", "hang", "corrupt"),
                    scratch=tmp_path)  # fmt: skip
    config = TaskConfig(strategy=Weighted(), timeout_s=0.2, deadline_s=2.0, probe_interval_s=0,
                        probe_timeout_s=0.3)  # fmt: skip
    model = EngineFailureModel.from_registry(registry, config=config, spec=spec)
    try:
        members = {m.backend.name: m for m in model.engine.tasks["failure"].members}
        assert list(members) == ["failure-gbm@2#0", f"oip://127.0.0.1:{url.rsplit(':', 1)[1]}",
                                 "drill-raise", "drill-hang", "drill-corrupt"]  # fmt: skip
        corrupt = members["drill-corrupt"].backend
        assert isinstance(corrupt, BrokenBackend) and "cannot load" in corrupt.reason
        # the load-time golden-set probe took the dead remote and the corrupt file out; the
        # raise / hang drills passed it (they go bad only while serving)
        healthy = {n for n, m in members.items() if m.health.healthy}
        assert healthy == {"failure-gbm@2#0", "drill-raise", "drill-hang"}
        x, _ = registry.holdout("failure-gbm")
        handle = registry.promoted_handle()
        assert handle is not None
        failed: set[str] = set()
        for _ in range(20):  # weighted order: whatever comes first, the answer is the replica's
            np.testing.assert_array_equal(model.predict(x[:50]), handle.predict(x[:50]))
            assert model.last is not None and model.last.model_ref == "failure-gbm@2"
            failed |= {f"{c.backend} {c.outcome}" for c in model.last.calls if not c.ok}
        assert failed == {"drill-raise error", "drill-hang timeout"}
        assert "drill-corrupt error" not in failed  # taken out at load: never called
    finally:
        model.close()


def test_replicas_that_do_not_load_become_a_broken_backend_when_a_remote_exists(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    manifest = registry.manifest("failure-gbm")
    artifact = registry.version_dir("failure-gbm", manifest.version) / manifest.file
    artifact.write_bytes(b"not an onnx model")  # the hash check now fails
    url = f"http://127.0.0.1:{closed_port()}"
    config = TaskConfig(probe_interval_s=0, probe_timeout_s=0.3)
    with pytest.raises(Exception, match=r"sha256|hash|tamper"):  # no other backend: as before
        EngineFailureModel.from_registry(registry, config=config, spec=PoolSpec(replicas=1))
    model = EngineFailureModel.from_registry(
        registry, config=config, spec=PoolSpec(replicas=1, remote=(url,))
    )
    try:
        broken = model.engine.tasks["failure"].members[0].backend
        assert isinstance(broken, BrokenBackend) and broken.name == "failure-gbm@2#local"
        assert np.isnan(model.predict(np.zeros((3, len(manifest.inputs)), np.float32))).all()
        reason = model.last.reason if model.last is not None else None
        assert reason is not None and "failure-gbm@2#local: BackendError" in reason
        assert "TamperedArtifact" in reason and "oip://127.0.0.1" in reason
    finally:
        model.close()


def _pipeline_with(model: EngineFailureModel) -> tuple[ReadingPipeline, list[Inbound]]:
    readings = list(simulate(SimConfig(devices=3, count=40, seed=2)).readings())
    batch = [Inbound(r.device_id.encode(), orjson.dumps(r.to_wire()), "r", 0, i)
             for i, r in enumerate(readings)]  # fmt: skip
    return ReadingPipeline(Scorer(failure_model=model)), batch


class MemoryStore:
    def __init__(self) -> None:
        self.states: dict[str, object] = {}

    def load(self, device_id: str, origin: int) -> object | None:
        return self.states.get(device_id)

    def save(self, device_id: str, state: object, origin: int) -> None:
        self.states[device_id] = state


def _predictions(result: object) -> list[dict]:
    out = []
    for o in result.outbound:  # type: ignore[attr-defined]
        if o.role == "predictions":
            value = orjson.loads(o.value)
            out.extend(value.get("predictions", [value]))
    return out


def test_every_prediction_names_the_backends_called_and_how_long(registry: ModelRegistry):
    backends = [ScriptedBackend("flaky", mode="raise"), ScriptedBackend("steady", value=0.3)]
    from edgeml.models.inference import InferenceEngine
    from edgeml.models.inference.adapter import EngineLoop

    engine = InferenceEngine(seed=0)
    config = TaskConfig(strategy=Weighted({"flaky": 1e9}), probe_interval_s=0)
    engine.add_task("failure", backends, config)
    runner = EngineLoop()
    model = EngineFailureModel(engine, "failure", registry.manifest("failure-gbm"), runner)
    try:
        pipeline, batch = _pipeline_with(model)
        result = pipeline.process(batch, MemoryStore())  # type: ignore[arg-type]
        predictions = _predictions(result)
        assert len(predictions) == len(batch)
        scored = [p for p in predictions if p["failure_prob"] is not None]
        assert scored, "no reading had the failure model's inputs"
        for p in scored:  # one batch, one call: flaky failed, steady answered
            record = p["models"]["failure_backends"]
            assert record.startswith("flaky error ") and "; steady ok " in record, record
            assert record.endswith(" ms")
    finally:
        model.close()


def test_when_every_backend_is_down_predictions_go_out_null_with_the_reason(registry):
    backends = [ScriptedBackend("a", mode="raise"), ScriptedBackend("b", mode="hang")]
    from edgeml.models.inference import InferenceEngine
    from edgeml.models.inference.adapter import EngineLoop

    engine = InferenceEngine(seed=0)
    engine.add_task("failure", backends, TaskConfig(timeout_s=0.05, probe_interval_s=0))
    model = EngineFailureModel(engine, "failure", registry.manifest("failure-gbm"), EngineLoop())
    try:
        pipeline, batch = _pipeline_with(model)
        result = pipeline.process(batch, MemoryStore())  # type: ignore[arg-type]
        predictions = _predictions(result)
        assert len(predictions) == len(batch) and result.dead_letters == 0
        with_inputs = [p for p in predictions if p["failure_reason"] is None
                       or "every backend" in p["failure_reason"]]  # fmt: skip
        assert with_inputs
        for p in with_inputs:
            assert p["failure_prob"] is None
            assert p["failure_reason"].startswith("every backend of task 'failure' failed: ")
            assert (
                "a: BackendError" in p["failure_reason"] and "b: timed out" in p["failure_reason"]
            )
            assert "failure" not in p["models"]  # only the models that scored it are named
        assert all(o.failure_prob is None for o in result.scored)
    finally:
        model.close()


def test_take_answer_is_once_per_call(registry: ModelRegistry) -> None:
    model = EngineFailureModel.from_registry(registry, replicas=1,
                                             config=TaskConfig(probe_interval_s=0))  # fmt: skip
    try:
        assert model.take_answer() is None
        model.predict(np.zeros((2, len(model.manifest.inputs)), np.float32))
        answer = model.take_answer()
        assert answer is not None and answer[0].startswith("failure-gbm@2#0 ok ")
        assert answer[1] is None and model.take_answer() is None
    finally:
        model.close()


def test_other_failure_models_leave_predictions_as_they_were():
    pipeline = ReadingPipeline(Scorer(failure_model=SimpleNamespace(  # type: ignore[arg-type]
        ref="x@1", predict=lambda x: np.full(len(x), 0.25))))  # fmt: skip
    readings = list(simulate(SimConfig(devices=1, count=30, seed=1)).readings())
    batch = [Inbound(b"d", orjson.dumps(r.to_wire()), "r", 0, i) for i, r in enumerate(readings)]
    predictions = _predictions(pipeline.process(batch, MemoryStore()))  # type: ignore[arg-type]
    assert predictions and all("failure_backends" not in p["models"] for p in predictions)
