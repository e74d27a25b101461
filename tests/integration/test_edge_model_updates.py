"""Signed model updates to a running edge agent through the real broker (issue #13, item 4).

The agent scores a paced simulated fleet and syncs to the session broker while the test
publishes, on the `model-artifacts` and `model-registry` topics, in this order: a version whose
model bytes were changed after signing (refused: tampered), an unsigned one (refused: unsigned),
a good signed one (`edgeml edge publish`'s function: swapped in, kept after its health window),
and a signed one that passes its golden set but answers 0.97 for every row (swapped in, rolled
back when its window's mean drifts). Then every reading has exactly one prediction on the
predictions topic, across all three swaps, in per-device order, and the versions on them are
the ones that served.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgeml.app.cli.edge_models import publish_bundle
from edgeml.app.settings import Settings
from edgeml.edge.agent import EdgeAgent
from edgeml.edge.bundle import pack_version
from edgeml.edge.settings import EdgeSettings
from edgeml.edge.signing import generate_keypair
from edgeml.edge.sources import ThreadedSource
from edgeml.models.manifest import ModelAnnouncement, ModelManifest
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry
from edgeml.sim.generator import SimConfig, simulate
from tests.unit.edge.model_versions import constant_version, copy_version, seed, signed

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0


def _send(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close(timeout=10)


def _announce_raw(bootstrap: str, prefix: str, version_dir: Path) -> None:
    """Publish a version's bundle as it is on disk, then its announcement (no checks)."""
    key, bundle = pack_version(version_dir)
    _send(bootstrap, f"{prefix}model-artifacts", key, bundle)
    manifest = ModelManifest.from_json((version_dir / "manifest.json").read_text())
    announcement = ModelAnnouncement.of(manifest)
    _send(bootstrap, f"{prefix}model-registry", announcement.key, announcement.to_bytes())


def _consume(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=8000,
    )  # fmt: skip
    try:
        return [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()


async def _until(what: str, ready: Callable[[], bool], task: asyncio.Task[int]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        if task.done():
            task.result()  # raises what stopped the agent
            pytest.fail(f"the agent stopped before: {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.05)


async def test_signed_updates_swap_refuse_and_roll_back_and_every_reading_is_scored_once(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    unique_id: str,
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
) -> None:
    compact = {"cleanup.policy": "compact"}
    topic_factory("model-registry", 1, configs=compact)
    topic_factory("model-artifacts", 1, configs=compact)
    predictions_topic = topic_factory("predictions", 2)
    topic_factory("anomaly-alerts", 2)
    prefix = f"{unique_id}-"
    private, public = generate_keypair()
    key_file = tmp_path / "edge-signing.pub"
    key_file.write_bytes(public)
    cloud = seed(tmp_path / "cloud")
    signed(cloud / FAILURE_MODEL_ID / "2", private)  # the device starts from a signed @2
    device = shutil.copytree(cloud, tmp_path / "device-registry")  # as installed on the box

    settings = EdgeSettings(
        db_path=tmp_path / "edge.db", registry_root=device, model_public_key=key_file,
        bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, agent_id="edge-upd",
        web_port=0, batch_max=50, model_health_batches=10, backoff_max_s=1.0,
    )  # fmt: skip
    agent = EdgeAgent(settings)
    assert agent.model_version.startswith("failure-gbm@2")

    done = threading.Event()
    sent: list[tuple[str, int]] = []

    def readings() -> Iterator[bytes]:  # paced, until the test has seen every update through
        config = SimConfig(devices=5, count=20_000, seed=4, warmup=60.0, incident_every=300.0)
        for reading in simulate(config).readings():
            if done.is_set():
                return
            sent.append((reading.device_id, reading.seq))
            yield orjson.dumps(reading.to_wire())
            time.sleep(0.0005)

    task = asyncio.create_task(agent.run(ThreadedSource(None, readings), "synced"))
    try:
        m = agent.metrics

        # 1. tampered: signed, then its model bytes changed
        tampered = signed(copy_version(cloud, "3"), private)
        (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
        await asyncio.to_thread(_announce_raw, kafka_bootstrap, prefix, tampered)
        await _until("tampered @3 refused", lambda: m.models_refused.get("tampered") == 1, task)
        # 2. unsigned
        await asyncio.to_thread(_announce_raw, kafka_bootstrap, prefix, copy_version(cloud, "4"))
        await _until("unsigned @4 refused", lambda: m.models_refused.get("unsigned") == 1, task)
        assert agent.model_version.startswith("failure-gbm@2") and m.model_swaps == 0
        # 3. a good signed update, published as `edgeml edge publish` does
        good = signed(copy_version(cloud, "5"), private)
        cli_settings = settings_factory(bootstrap_servers=kafka_bootstrap)
        lines = await asyncio.to_thread(publish_bundle, cli_settings, good)
        assert lines[0].startswith("published failure-gbm@5") and "announced" in lines[1]
        await _until("@5 kept", lambda: m.model_kept == 1, task)
        assert agent.model_version.startswith("failure-gbm@5")
        # 4. signed, passes its golden set, drifts on live data: rolled back to @5
        drifting = signed(constant_version(cloud, "6", 0.97, tmp_path), private)
        await asyncio.to_thread(publish_bundle, cli_settings, drifting)
        await _until("@6 rolled back", lambda: m.model_rollbacks == 1, task)
        assert agent.model_version.startswith("failure-gbm@5")
        assert (m.model_swaps, m.model_kept, m.models_refused) == (
            2, 1, {"tampered": 1, "unsigned": 1},
        )  # fmt: skip
    finally:  # the source ends, the agent syncs what it scored and stops
        done.set()
    assert await asyncio.wait_for(task, DEADLINE_S) == 0

    store = ModelRegistry(settings.model_store_path())
    assert store.promoted_version(FAILURE_MODEL_ID) == "5"
    assert sorted(store.versions(FAILURE_MODEL_ID)) == ["5", "6"]  # refused ones left nothing
    records = await asyncio.to_thread(_consume, kafka_bootstrap, predictions_topic)
    got = [(r["device_id"], r["seq"]) for r in records]
    assert len(got) == len(set(got)) == len(sent)  # one prediction per reading, across swaps
    assert set(got) == set(sent)
    for dev in {d for d, _ in sent}:
        assert [s for d, s in got if d == dev] == [s for d, s in sent if d == dev]
    versions = [r["model_version"] for r in records]
    for ref in ("failure-gbm@2", "failure-gbm@5", "failure-gbm@6"):
        assert any(ref in v for v in versions), (ref, sorted(set(versions)))
    assert not any("failure-gbm@3" in v or "failure-gbm@4" in v for v in versions)
