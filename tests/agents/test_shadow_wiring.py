"""`build_worker` with `EDGEML_FAILURE_CHALLENGER`: the real `score_readings` agent feeds the
challenger's ShadowScorer, `publish_comparisons` sends one `ModelComparison` per scored batch to
`model-comparisons`, the counters are on `/metrics`; without the setting nothing changes.

No broker: the producer's `send` records what the worker sends (as in test_writeback)."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from edgeml.app.errors import ConfigError
from edgeml.app.factory import Worker, build_worker
from edgeml.app.settings import Settings
from edgeml.models.inference import EngineFailureModel
from edgeml.models.registry import FAILURE_MODEL_ID, ModelHandle, ModelRegistry
from edgeml.models.shipped import SHIPPED_ROOT
from edgeml.sim.generator import SimConfig, simulate

CHAMPION, CHALLENGER = f"{FAILURE_MODEL_ID}@2", f"{FAILURE_MODEL_ID}@1"  # shipped: @2 promoted


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """The shipped registry plus an unpromoted copy of the promoted version as @3."""
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


def _task(worker: Worker, name: str) -> Callable[[], Any] | None:
    return next((t for t in worker.app._app_tasks if t.__name__ == name), None)


class Sent(list[tuple[str, Any]]):
    """(topic, (key, value)) of every producer send; `more` is set on each."""

    def __init__(self) -> None:
        super().__init__()
        self.more = asyncio.Event()

    def add(self, item: tuple[str, Any]) -> None:
        self.append(item)
        self.more.set()


async def _run_readings(worker: Worker, readings: list[dict[str, Any]]) -> Sent:
    """The readings through the real `score_readings`; returns every send (later ones too)."""
    app = worker.app
    app.finalize()
    app.flow_control.resume()
    app.conf.topic_allow_declare = False  # no broker to create `model-comparisons` on
    app.producer.send_soon = lambda fut: None  # type: ignore[method-assign]  # changelogs
    sent = Sent()

    async def send(topic: str, key: bytes | None, value: bytes, *args: Any) -> Any:
        sent.add((topic, (key, value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    app.producer.send = send  # type: ignore[method-assign,assignment]
    async with app.agents["score_readings"].test_context() as agent:
        for r in readings:
            await agent.put(orjson.dumps(r), key=r["device_id"].encode())
    return sent


def _readings(per_device: int = 80) -> list[dict[str, Any]]:
    sim = simulate(SimConfig(devices=3, count=per_device, seed=11))
    return [r.to_wire() for r in sim.readings()]


async def test_a_worker_with_a_challenger_publishes_a_comparison_per_scored_batch(
    settings_factory: Callable[..., Settings], registry_root: Path
) -> None:
    worker = build_worker(settings_factory(
        registry_root=registry_root, failure_challenger=CHALLENGER, batch_max=50,
        batch_within_s=0.01,
    ))  # fmt: skip
    shadow = worker.shadow
    assert shadow is not None and shadow.challenger.ref == CHALLENGER
    assert shadow.champion is worker.scorer.failure_model  # the served handle: swaps show
    assert worker.scorer.keep_failure_rows
    assert worker.observers[-1].__name__ == "hold_batch"  # still last: holds the writes
    publish = _task(worker, "publish_comparisons")
    assert publish is not None
    try:
        readings = _readings()
        sent = await _run_readings(worker, readings)
        assert shadow.wait_idle(30.0)
        task = asyncio.ensure_future(publish())

        async def published() -> None:
            while len(_of(sent, "model-comparisons")) < shadow.stats.compared:
                sent.more.clear()
                await sent.more.wait()  # the task drains every 0.5 s

        try:
            await asyncio.wait_for(published(), 30.0)
        finally:
            task.cancel()
    finally:
        shadow.close()
    predictions = [orjson.loads(v) for _, v in _of(sent, "predictions")]
    comparisons = _of(sent, "model-comparisons")
    assert len(predictions) == len(readings) == 240
    stats = shadow.stats
    assert stats.submitted == stats.compared == len(comparisons) > 1  # several batches
    assert stats.dropped == stats.refused == stats.challenger_errors == 0
    assert {key for key, _ in comparisons} == {CHALLENGER.encode()}
    records = [orjson.loads(value) for _, value in comparisons]
    assert {(r["champion"], r["challenger"]) for r in records} == {(CHAMPION, CHALLENGER)}
    rows = [row for r in records for row in r["rows"]]
    # every reading the champion scored (a failure_prob) was shadowed, once
    scored = {(p["device_id"], p["seq"]) for p in predictions if p["failure_prob"] is not None}
    assert sorted((row["device_id"], row["seq"]) for row in rows) == sorted(scored)
    assert stats.rows == len(rows)
    challenger_scores = np.array([row["challenger"] for row in rows])
    champion_scores = np.array([row["champion"] for row in rows])
    assert np.all((challenger_scores >= 0) & (challenger_scores <= 1))
    assert not np.allclose(challenger_scores, champion_scores)  # two different versions

    text = worker.metrics.render().decode()
    line = f'edgeml_shadow_batches_total{{challenger="{CHALLENGER}",outcome="compared"}}'
    assert f"{line} {float(len(comparisons))}" in text
    line = f'edgeml_shadow_rows_total{{challenger="{CHALLENGER}",outcome="submitted"}}'
    assert f"{line} {float(len(rows))}" in text
    assert 'edgeml_observer_errors_total{observer="shadow"} 0.0' in text


def _of(sent: list[tuple[str, Any]], name: str) -> list[Any]:
    return [value for topic, value in sent if topic.endswith(f"-{name}")]


async def test_without_a_challenger_nothing_changes(
    settings_factory: Callable[..., Settings], registry_root: Path
) -> None:
    worker = build_worker(settings_factory(registry_root=registry_root, batch_within_s=0.01))
    assert worker.shadow is None
    assert not worker.scorer.keep_failure_rows  # no feature rows kept per reading
    assert len(worker.observers) == 3 and worker.observers[-1].__name__ == "hold_batch"
    assert _task(worker, "publish_comparisons") is None
    sent = await _run_readings(worker, _readings(20))
    assert len(_of(sent, "predictions")) == 60
    assert not _of(sent, "model-comparisons")
    assert "edgeml_shadow" not in worker.metrics.render().decode()


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        (f"{FAILURE_MODEL_ID}@9", f"failure_challenger {FAILURE_MODEL_ID}@9: "),
        ("no-such-model@1", "failure_challenger no-such-model@1: no model 'no-such-model'"),
    ],
)
def test_an_unknown_challenger_stops_start_up_with_one_line(
    settings_factory: Callable[..., Settings], registry_root: Path, ref: str, error: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        build_worker(settings_factory(registry_root=registry_root, failure_challenger=ref))
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)


@pytest.mark.parametrize("ref", ["failure-gbm", "@1", "failure-gbm@"])
def test_a_challenger_that_is_not_a_ref_is_a_settings_error(
    settings_factory: Callable[..., Settings], ref: str
) -> None:
    with pytest.raises(ValidationError, match="registry ref 'model-id@version'"):
        settings_factory(failure_challenger=ref)


def test_an_empty_challenger_is_none(settings_factory: Callable[..., Settings]) -> None:
    assert settings_factory(failure_challenger=" ").failure_challenger is None


def _engine_requests(worker: Worker) -> float:
    text = worker.metrics.render().decode()
    found = re.search(r'edgeml_inference_requests_total\{outcome="ok",task="failure"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_on_the_engine_the_champion_is_the_served_version_in_process_following_swaps(
    settings_factory: Callable[..., Settings], registry_root: Path
) -> None:
    worker = build_worker(settings_factory(
        registry_root=registry_root, failure_engine=True, failure_probe_interval_s=0,
        failure_challenger=CHALLENGER,
    ))  # fmt: skip
    served, shadow = worker.scorer.failure_model, worker.shadow
    assert isinstance(served, EngineFailureModel) and shadow is not None
    try:
        assert shadow.champion.ref == CHAMPION
        x, _ = worker.registry.holdout(FAILURE_MODEL_ID)
        np.testing.assert_array_equal(shadow.champion.predict(x[:32]), served.predict(x[:32]))
        assert _engine_requests(worker) == 1.0  # served's; the shadow's re-score is not the pool's
        announcement = worker.registry.announcement(FAILURE_MODEL_ID, "3").to_bytes()
        worker.pipeline.apply_model_announcement(announcement, worker.registry)
        assert shadow.champion.ref == f"{FAILURE_MODEL_ID}@3"
        handle = ModelHandle(worker.registry.load(FAILURE_MODEL_ID, "3"))
        np.testing.assert_array_equal(shadow.champion.predict(x[:32]), handle.predict(x[:32]))
    finally:
        shadow.close()
        served.close()
