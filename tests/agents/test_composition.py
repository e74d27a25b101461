"""`build_worker`: one composition root, one model registry.

The start-up failure model and every hot-swapped one come from the registry built with
`EDGEML_ONNX_THREADS` (before, the Scorer loaded its own registry with 1 thread, so the setting
only applied after the first hot swap).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeml.agents.score import BatchProgress
from edgeml.app.factory import Worker, build_worker, create_app
from edgeml.app.settings import Settings
from edgeml.models.registry import FAILURE_MODEL_ID, ModelHandle, ModelRegistry
from edgeml.models.shipped import SHIPPED_ROOT

THREADS = 3  # not the 1 that a registry without the setting uses


def intra_op_threads(handle: object) -> int:
    assert isinstance(handle, ModelHandle)
    return int(handle.current.session.get_session_options().intra_op_num_threads)


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """A copy of the shipped registry (failure-gbm@2 promoted) plus an unpromoted @3."""
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED_ROOT, root)
    registry = ModelRegistry(root)
    manifest = registry.manifest(FAILURE_MODEL_ID)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(registry.model_bytes(FAILURE_MODEL_ID))
    registry.register(
        FAILURE_MODEL_ID, artifact, kind="onnx", inputs=manifest.inputs,
        training_data="copy of the promoted version (test)", metrics={}, version="3",
        measure_latency=False,
    )  # fmt: skip
    return root


@pytest.fixture
def worker(settings_factory: Callable[..., Settings], registry_root: Path) -> Worker:
    return build_worker(settings_factory(registry_root=registry_root, onnx_threads=THREADS))


def test_the_start_up_model_uses_the_onnx_threads_setting(worker: Worker) -> None:
    assert worker.registry.threads == THREADS
    assert worker.scorer.failure_model is not None
    assert worker.scorer.failure_model.ref == f"{FAILURE_MODEL_ID}@2"
    assert intra_op_threads(worker.scorer.failure_model) == THREADS


def test_a_hot_swap_loads_from_the_same_registry(worker: Worker) -> None:
    announcement = worker.registry.announcement(FAILURE_MODEL_ID, "3").to_bytes()
    assert worker.pipeline.apply_model_announcement(announcement, worker.registry) == (
        f"{FAILURE_MODEL_ID}@3"
    )
    assert worker.scorer.failure_model is not None
    assert worker.scorer.model_ids["failure"] == f"{FAILURE_MODEL_ID}@3"
    assert intra_op_threads(worker.scorer.failure_model) == THREADS


def test_the_parts_are_the_ones_wired_into_the_app(worker: Worker) -> None:
    app = worker.app
    assert worker.pipeline.scorer is worker.scorer
    assert worker.scorer.on_model_call == worker.metrics.observe_model
    assert worker.flusher in app.sensors
    assert worker.observers[-1].__name__ == "hold_batch"  # holds what the others wrote
    assert worker.metrics.observe_batch in worker.observers
    assert isinstance(worker.progress, BatchProgress)
    assert {"score_readings", "learn_maintenance", "aggregate_sites"} <= set(app.agents)
    assert worker.analytics_tables.device_heads in app.tables.values()
    assert worker.tables.state_by_device in app.tables.values()


def test_without_a_promoted_model_the_worker_scores_with_the_online_model(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    worker = build_worker(settings_factory(registry_root=tmp_path / "empty"))
    assert worker.scorer.failure_model is None
    assert set(worker.scorer.model_ids) == {"anomaly", "failure_online"}


def test_create_app_is_the_worker_app(settings_factory: Callable[..., Settings]) -> None:
    app = create_app(settings_factory())
    assert {"score_readings", "learn_maintenance", "aggregate_sites"} <= set(app.agents)


def test_a_worker_in_a_fresh_home_serves_the_shipped_model(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    home = tmp_path / "fresh-home"
    built = build_worker(settings_factory(home=home))
    assert built.scorer.failure_model is not None
    assert built.scorer.model_ids["failure"].startswith(f"{FAILURE_MODEL_ID}@")
    assert (home / "models" / "artifacts" / FAILURE_MODEL_ID).is_dir()
