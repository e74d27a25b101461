"""Shadow scoring end to end on the real broker: simulator readings scored by the champion
(failure-gbm, promoted), the challenger (the other version) fed by the worker's batch observer,
comparisons published to `model-comparisons`, read back by `edgeml models compare --from-topic`
with delayed labels from `maintenance-events`, and the challenger promoted through the registry.

The last tests run a real `edgeml worker` process with `EDGEML_FAILURE_CHALLENGER`: what it
publishes to `model-comparisons` covers every reading it scored, its `/metrics` count the same
batches, and a ref the registry lacks stops its start-up with one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from typer.testing import CliRunner

from edgeml.agents.shadow import observer
from edgeml.app.cli import cli as cli_app
from edgeml.app.settings import Settings
from edgeml.models.inference.comparison import agreement
from edgeml.models.inference.shadow import ShadowScorer, pump
from edgeml.models.pipeline import BatchResult
from edgeml.models.registry import ModelHandle, ModelRegistry, SessionCache
from edgeml.models.scoring import DeviceState, Scorer
from edgeml.models.shipped import seed_registry
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import MaintenanceEvent, SensorReading

pytestmark = pytest.mark.integration

BATCH = 200  # readings per scored batch, as the worker's take_events would hand them over


def _score(
    scorer: Scorer, states: dict[str, DeviceState], readings: list[SensorReading]
) -> BatchResult:
    """One batch through `Scorer.score_many`, as the pipeline calls it (states kept across)."""
    by_device: dict[str, list[SensorReading]] = {}
    for r in readings:
        by_device.setdefault(r.device_id, []).append(r)
    batch = [(states.setdefault(d, scorer.new_state(d)), rs) for d, rs in by_device.items()]
    result = BatchResult()
    for scored in scorer.score_many(batch):
        result.scored.extend(scored)
    return result


def test_shadow_comparisons_reach_the_topic_and_compare_reads_them_back(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_factory()
    comparisons_topic = topic_factory("model-comparisons", partitions=2)
    maintenance_topic = topic_factory("maintenance-events")
    assert comparisons_topic == settings.topic("model-comparisons")
    root = tmp_path / "artifacts"
    seed_registry(root)
    registry = ModelRegistry(root, sessions=SessionCache())
    champion = registry.promoted_handle()
    assert champion is not None
    inputs = champion.current.manifest.inputs
    other = next(
        v for v in registry.versions("failure-gbm") if v != champion.current.manifest.version
    )
    challenger = ModelHandle(registry.load("failure-gbm", other, expected_inputs=inputs))

    # the worker's side: the champion scores (the online model never learns: no maintenance
    # goes to the scorer, so the published failure_prob is the champion's own score)
    scorer = Scorer(failure_model=champion, keep_failure_rows=True)
    shadow = ShadowScorer(challenger, champion=champion, max_pending=1000)
    observe = observer(shadow)
    sim = simulate(SimConfig(devices=6, count=1500, seed=7))
    readings: list[SensorReading] = []
    maintenance: list[MaintenanceEvent] = []
    published: dict[tuple[str, int], float] = {}
    rows: dict[tuple[str, int], list[float]] = {}
    for event in sim.events():
        (maintenance if isinstance(event, MaintenanceEvent) else readings).append(event)  # type: ignore[arg-type]
    states: dict[str, DeviceState] = {}
    batches = 0
    for i in range(0, len(readings), BATCH):
        result = _score(scorer, states, readings[i : i + BATCH])
        observe(result, [])
        for s in result.scored:
            if s.failure_row is not None:
                key = (s.reading.device_id, s.reading.seq)
                published[key] = float(s.failure_prob or 0.0)
                rows[key] = s.failure_row
        batches += any(s.failure_row is not None for s in result.scored)
    assert shadow.wait_idle(60.0)
    assert shadow.stats.dropped == 0 and shadow.stats.challenger_errors == 0
    assert shadow.stats.compared == batches and len(published) > 1000
    failures = [m for m in maintenance if m.kind == "failure"]
    assert failures, "seed 7 should produce failures to label with"

    async def publish() -> int:
        producer = AIOKafkaProducer(**settings.producer_config())
        await producer.start()
        try:
            for m in maintenance:
                await producer.send_and_wait(
                    maintenance_topic, orjson.dumps(m.to_wire()), key=m.device_id.encode()
                )

            async def send(key: bytes, value: bytes) -> None:
                await producer.send_and_wait(comparisons_topic, value, key=key)

            stop = asyncio.Event()
            stop.set()
            return await pump(shadow, send, stop=stop)
        finally:
            await producer.stop()

    assert asyncio.run(publish()) == batches
    shadow.close()

    monkeypatch.setenv("EDGEML_TOPIC_PREFIX", settings.topic_prefix)
    runner = CliRunner()
    a, b = champion.ref, challenger.ref
    args = ["models", "compare", a, b, "--from-topic", "--json", "--root", str(root),
            "--bootstrap", settings.bootstrap_servers]  # fmt: skip
    out = runner.invoke(cli_app, args)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["batches"] == batches and report["rows"] == len(published)
    keys = sorted(published)
    x = np.asarray([rows[k] for k in keys], dtype=np.float32)
    want = agreement(np.array([published[k] for k in keys]), challenger.predict(x))
    assert report["agreement"] == want  # the topic carried both models' exact scores
    assert np.allclose(champion.predict(x), [published[k] for k in keys], atol=1e-12)
    assert 0 < report["labelled_rows"] <= report["rows"]
    for role in ("a", "b"):
        assert report[role]["latency"]["calls"] == batches
        assert 0.0 <= report[role]["quality"]["roc_auc"] <= 1.0
        assert report[role]["quality"]["positives"] > 0

    # promotion goes through the registry (and announces on model-registry)
    registry_topic = topic_factory("model-registry")
    out = runner.invoke(cli_app, [*args, "--promote", "--force"])
    assert out.exit_code == 0, out.output
    assert registry.promoted_version("failure-gbm") == other
    assert f"announced on {registry_topic}" in out.output


def _consume(settings: Settings, name: str, want: Callable[[list[bytes]], bool]) -> list[bytes]:
    """Values on one platform topic, read from the start until `want(values)` (or 60 s)."""
    consumer = KafkaConsumer(
        settings.topic(name), bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000,
    )  # fmt: skip
    values: list[bytes] = []
    deadline = time.monotonic() + 60.0
    try:
        while not want(values) and time.monotonic() < deadline:
            values.extend(message.value for message in consumer)
    finally:
        consumer.close()
    return values


def test_a_worker_process_with_a_challenger_publishes_comparisons_of_what_it_scored(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "artifacts"
    seed_registry(root)  # failure-gbm@2 promoted, @1 beside it
    settings = settings_factory(registry_root=root, failure_challenger="failure-gbm@1")
    worker_factory(settings)
    readings = list(simulate(SimConfig(devices=4, count=150, seed=7)).readings())
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for r in readings:
        producer.send(settings.topic("sensor-readings"), orjson.dumps(r.to_wire()),
                      key=r.device_id.encode())  # fmt: skip
    producer.flush()
    producer.close()

    def predictions(values: list[bytes]) -> list[dict[str, object]]:
        decoded = [orjson.loads(v) for v in values]  # envelopes fanned out, as read_records
        return [p for d in decoded for p in d.get("predictions", [d])]

    out = _consume(settings, "predictions", lambda vs: len(predictions(vs)) >= len(readings))
    scored = {(p["device_id"], p["seq"]) for p in predictions(out) if p["failure_prob"] is not None}
    assert len(predictions(out)) == len(readings) and len(scored) > 500

    def rows(values: list[bytes]) -> list[dict[str, object]]:
        return [row for v in values for row in orjson.loads(v)["rows"]]

    comparisons = _consume(settings, "model-comparisons", lambda vs: len(rows(vs)) >= len(scored))
    records = [orjson.loads(v) for v in comparisons]
    pairs = {(r["champion"], r["challenger"]) for r in records}
    assert pairs == {("failure-gbm@2", "failure-gbm@1")}
    assert sorted((row["device_id"], row["seq"]) for row in rows(comparisons)) == sorted(scored)
    assert all(r["challenger_error"] is None for r in records)
    with urllib.request.urlopen(f"{settings.web_url()}/metrics", timeout=10) as response:
        text = response.read().decode()
    compared = 'edgeml_shadow_batches_total{challenger="failure-gbm@1",outcome="compared"}'
    assert f"{compared} {float(len(records))}" in text
    assert 'edgeml_shadow_batches_total{challenger="failure-gbm@1",outcome="dropped"} 0.0' in text

    monkeypatch.setenv("EDGEML_TOPIC_PREFIX", settings.topic_prefix)
    args = ["models", "compare", "failure-gbm@2", "failure-gbm@1", "--from-topic", "--json",
            "--root", str(root), "--bootstrap", settings.bootstrap_servers]  # fmt: skip
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["batches"] == len(records) and report["rows"] == len(scored)


def test_a_worker_process_with_an_unknown_challenger_stops_with_one_line(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    seed_registry(root)
    settings = settings_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env |= {
        "EDGEML_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "EDGEML_TOPIC_PREFIX": settings.topic_prefix, "EDGEML_APP_ID": settings.app_id,
        "EDGEML_STORE": "memory://", "EDGEML_DATA_DIR": str(settings.data_dir),
        "EDGEML_REGISTRY_ROOT": str(root), "EDGEML_FAILURE_CHALLENGER": "failure-gbm@9",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "edgeml.app", "worker"], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[-1].startswith("edgeml: error: failure_challenger failure-gbm@9: "), lines[-5:]
