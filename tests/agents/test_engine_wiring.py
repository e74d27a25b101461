"""`build_worker` with the failure task on the inference engine (`EDGEML_FAILURE_*`): the
Scorer's failure model is the engine's pool, its metrics are on the worker's `/metrics`, and a
hot swap goes through it. Without those settings the worker is as before (test_composition)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from edgeml.app.factory import Worker, build_worker
from edgeml.app.metrics import iter_metric_names
from edgeml.app.settings import Settings
from edgeml.models.inference import EngineFailureModel, LeastLoaded
from edgeml.models.pipeline import Inbound
from edgeml.models.registry import FAILURE_MODEL_ID, ModelHandle, ModelRegistry
from edgeml.models.shipped import SHIPPED_ROOT
from edgeml.sim.generator import SimConfig, simulate


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """The shipped registry plus an unpromoted copy of the promoted version as @3."""
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED_ROOT, root)
    registry = ModelRegistry(root)
    manifest = registry.manifest(FAILURE_MODEL_ID)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(registry.model_bytes(FAILURE_MODEL_ID))
    holdout = registry.holdout_path(FAILURE_MODEL_ID)
    registry.register(
        FAILURE_MODEL_ID, artifact, kind="onnx", inputs=manifest.inputs,
        training_data="copy of the promoted version (test)", metrics={}, version="3",
        measure_latency=False, holdout=holdout,
    )  # fmt: skip
    return root


@pytest.fixture
def worker(settings_factory: Callable[..., Settings], registry_root: Path) -> Iterator[Worker]:
    settings = settings_factory(
        registry_root=registry_root, failure_engine=True, failure_replicas=2,
        failure_strategy="least_loaded", failure_probe_interval_s=0,
    )  # fmt: skip
    built = build_worker(settings)
    yield built
    model = built.scorer.failure_model
    if isinstance(model, EngineFailureModel):
        model.close()


def test_the_failure_model_is_the_engine_pool_configured(worker: Worker) -> None:
    model = worker.scorer.failure_model
    assert isinstance(model, EngineFailureModel)
    pool = model.engine.tasks["failure"]
    assert [m.backend.name for m in pool.members] == ["failure-gbm@2#0", "failure-gbm@2#1"]
    assert isinstance(pool.config.strategy, LeastLoaded)
    assert pool.config.timeout_s == 0.5 and pool.config.deadline_s == 2.0
    handle = worker.registry.promoted_handle(FAILURE_MODEL_ID)
    assert handle is not None
    x, _ = worker.registry.holdout(FAILURE_MODEL_ID)
    np.testing.assert_array_equal(model.predict(x[:64]), handle.predict(x[:64]))


def test_engine_metrics_are_on_the_worker_metrics(worker: Worker) -> None:
    model = worker.scorer.failure_model
    assert isinstance(model, EngineFailureModel)
    model.predict(np.zeros((4, len(model.manifest.inputs)), np.float32))
    text = worker.metrics.render().decode()
    names = set(iter_metric_names(text))
    assert {
        "edgeml_inference_backend_seconds_bucket", "edgeml_inference_backend_calls_total",
        "edgeml_inference_requests_total", "edgeml_inference_breaker_state",
        "edgeml_inference_backend_healthy", "edgeml_inference_task_ready",
    } <= names  # fmt: skip
    assert 'edgeml_inference_task_ready{task="failure"} 1.0' in text
    assert 'edgeml_inference_requests_total{outcome="ok",task="failure"} 1.0' in text


def test_a_hot_swap_goes_through_the_engine(worker: Worker) -> None:
    announcement = worker.registry.announcement(FAILURE_MODEL_ID, "3").to_bytes()
    assert worker.pipeline.apply_model_announcement(announcement, worker.registry) == (
        f"{FAILURE_MODEL_ID}@3"
    )
    model = worker.scorer.failure_model
    assert isinstance(model, EngineFailureModel)
    assert worker.scorer.model_ids["failure"] == f"{FAILURE_MODEL_ID}@3"
    names = [m.backend.name for m in model.engine.tasks["failure"].members]
    assert names == ["failure-gbm@3#0", "failure-gbm@3#1"]
    assert worker.pipeline.apply_model_announcement(announcement, worker.registry) is None


def test_without_engine_settings_the_worker_keeps_the_registry_handle(
    settings_factory: Callable[..., Settings], registry_root: Path
) -> None:
    built = build_worker(settings_factory(registry_root=registry_root))
    assert isinstance(built.scorer.failure_model, ModelHandle)
    assert built.metrics.engine is None
    assert "edgeml_inference" not in built.metrics.render().decode()


class _Store:
    def __init__(self) -> None:
        self.states: dict[str, object] = {}

    def load(self, device_id: str, origin: int) -> object | None:
        return self.states.get(device_id)

    def save(self, device_id: str, state: object, origin: int) -> None:
        self.states[device_id] = state


def test_a_worker_whose_every_backend_is_down_still_predicts_with_null_and_the_reason(
    settings_factory: Callable[..., Settings], registry_root: Path
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    built = build_worker(settings_factory(
        registry_root=registry_root, failure_replicas=0,
        failure_remote=f"http://127.0.0.1:{port}", failure_probe_interval_s=0,
    ))  # fmt: skip
    model = built.scorer.failure_model
    assert isinstance(model, EngineFailureModel)
    try:
        readings = list(simulate(SimConfig(devices=2, count=20, seed=4)).readings())
        batch = [Inbound(r.device_id.encode(), orjson.dumps(r.to_wire()), "r", 0, i)
                 for i, r in enumerate(readings)]  # fmt: skip
        result = built.pipeline.process(batch, _Store())  # type: ignore[arg-type]
        predictions = [orjson.loads(o.value) for o in result.outbound if o.role == "predictions"]
        assert len(predictions) == len(batch) and result.dead_letters == 0
        down = [p for p in predictions if p["failure_reason"] and "oip://" in p["failure_reason"]]
        assert down, predictions[:2]
        for p in down:
            assert p["failure_prob"] is None
            assert p["failure_reason"].startswith("every backend of task 'failure' is down (")
        text = built.metrics.render().decode()
        assert 'edgeml_inference_task_ready{task="failure"} 0.0' in text
        assert 'edgeml_inference_requests_total{outcome="down",task="failure"}' in text
    finally:
        model.close()
