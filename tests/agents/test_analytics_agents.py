"""The analytics observer and `aggregate_sites` agent under Faust's test recipe (memory store,
`agent.test_context()`), and the metrics observer fed by the same batches."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeml.agents.analytics import PaneTables, local_heads
from edgeml.app.factory import Worker, build_worker
from edgeml.app.metrics import iter_metric_names
from edgeml.app.settings import Settings
from edgeml.models.analytics import FLEET_KEY, KeyPartial, key_view

T0 = 1_767_225_600.0


def reading(device: str, i: int, site: str, value: float) -> dict[str, Any]:
    return {"device_id": device, "ts": T0 + 7.0 * i, "seq": i, "site": site,
            "metrics": {"temperature": value, "humidity": 40.0 + i % 5}, "sent_at": T0}  # fmt: skip


DEVICES = {"dev-a": "plant-a", "dev-b": "plant-a", "dev-c": "plant-b"}


def messages() -> list[tuple[bytes, bytes]]:
    """40 readings per device over ~4.5 minutes, one envelope, one malformed message."""
    out: list[tuple[bytes, bytes]] = []
    for i in range(40):
        for n, (device, site) in enumerate(DEVICES.items()):
            out.append((device.encode(), orjson.dumps(reading(device, i, site, 20.0 + n + i / 8))))
    envelope = {"readings": [reading("dev-c", 40, "plant-b", 99.0), reading("dev-c", 41, "plant-b",
                                                                             98.0)]}  # fmt: skip
    out.append((b"dev-c", orjson.dumps(envelope)))
    out.append((b"dev-a", b'{"device_id": "dev-a", "ts": '))  # malformed: dead letter
    return out


def expected_windows() -> dict[str, dict[int, tuple[int, float, float, float]]]:
    """device -> 1-min window start -> (count, mean, min, max) of temperature, one pass."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _, value in messages():
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        for r in obj.get("readings", [obj]):
            acc[r["device_id"]][int(r["ts"] // 60) * 60].append(r["metrics"]["temperature"])
    out: dict[str, dict[int, tuple[int, float, float, float]]] = {}
    for device, windows in acc.items():
        out[device] = {}
        for start, values in windows.items():
            total = 0.0
            for v in values:
                total += v
            out[device][start] = (len(values), total / len(values), min(values), max(values))
    return out


@pytest.fixture
async def worker(settings_factory: Callable[..., Settings]) -> AsyncIterator[Worker]:
    worker = build_worker(settings_factory(batch_within_s=0.01, batch_max=16))
    worker.app.finalize()
    worker.app.flow_control.resume()
    yield worker


@pytest.fixture
def app(worker: Worker) -> faust.App:
    return worker.app


def stub_producer(app: faust.App) -> list[tuple[str, bytes, bytes]]:
    """No broker here: the producer's `send` (outputs) and `send_soon` (table changelogs, site
    partials) record (topic, key, value) instead."""
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes, *args: Any) -> asyncio.Future[None]:
        sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def send_soon(fut: Any) -> None:
        message = fut.message
        sent.append((message.channel.get_topic_name(), message.key, message.value))

    app.producer.send = send  # type: ignore[method-assign]
    app.producer.send_soon = send_soon  # type: ignore[method-assign]
    return sent


async def score(app: faust.App) -> list[tuple[str, bytes, bytes]]:
    """Run every message through `score_readings`; returns what it sent so far (a list the
    stub producer keeps appending to)."""
    sent = stub_producer(app)
    async with app.agents["score_readings"].test_context() as agent:
        for key, value in messages():
            await agent.put(value, key=key)
    return sent


def partials_in(
    worker: Worker, sent: list[tuple[str, bytes, bytes]]
) -> list[tuple[str, bytes, bytes]]:
    partials = worker.analytics_tables.site_partials_topic.get_topic_name()
    return [item for item in sent if item[0] == partials]


def flush(worker: Worker) -> None:
    """What Faust's next offset commit does to the write-back tables and site partials."""
    worker.stores.flush()


async def test_device_windows_equal_a_one_pass_computation(app: faust.App, worker: Worker) -> None:
    await score(app)
    parts = worker
    tables = parts.analytics_tables
    store = parts.stores.devices.store()
    assert len(parts.stores.devices.heads) == 3 and not tables.device_heads  # held back
    for device, windows in expected_windows().items():
        view = key_view(store, device, "tumbling", parts.windows)
        assert view is not None, device
        got = {w["start"]: w for w in view["windows"]}
        assert set(got) == set(windows)
        for start, (count, mean, lo, hi) in windows.items():
            metric = got[start]["metrics"]["temperature"]
            assert got[start]["count"] == count
            assert (metric["count"], metric["min"], metric["max"]) == (count, lo, hi)
            assert metric["mean"] == pytest.approx(mean, rel=1e-12)
        assert view["site"] == DEVICES[device]
    heads = dict(local_heads(parts.stores.devices.heads, set(range(4))))
    assert heads["dev-a"].totals.dead_letters == 1  # the malformed message's key
    assert heads["dev-c"].totals.count == 42
    held = {d: key_view(store, d, "hopping", parts.windows) for d in DEVICES}
    flush(worker)
    assert not parts.stores.devices.heads and not parts.stores.devices.panes
    written = PaneTables.over(tables.device_heads, tables.device_panes).store()
    assert {d: key_view(written, d, "hopping", parts.windows) for d in DEVICES} == held


async def test_site_partials_fold_into_site_and_fleet_tables(
    app: faust.App, worker: Worker
) -> None:
    recorded = await score(app)
    assert partials_in(worker, recorded) == [], "partials are sent by the commit, not per batch"
    flush(worker)
    sent = partials_in(worker, recorded)
    # test_context puts every event on partition 0: one partial per key for the whole run
    assert sorted(key for _, key, _ in sent) == [FLEET_KEY.encode(), b"plant-a", b"plant-b"]
    for _, key, value in sent:
        name, partial = KeyPartial.from_bytes(value)
        assert name == key.decode() and partial.source == 0 and partial.offset >= 0
    async with app.agents["aggregate_sites"].test_context() as agent:
        for _, key, value in sent:
            await agent.put(value, key=key)
    parts = worker
    flush(worker)
    store = PaneTables.over(
        parts.analytics_tables.site_heads, parts.analytics_tables.site_panes
    ).store()
    fleet = key_view(store, FLEET_KEY, "tumbling", parts.windows)
    plant_a = key_view(store, "plant-a", "hopping", parts.windows)
    assert fleet is not None and plant_a is not None
    assert fleet["totals"]["count"] == 3 * 40 + 2
    assert fleet["totals"]["dead_letters"] == 1
    assert plant_a["totals"]["count"] == 80
    expected = expected_windows()
    for window in fleet["windows"]:
        per_device = [w[window["start"]] for w in expected.values() if window["start"] in w]
        assert window["count"] == sum(c for c, *_ in per_device)
        temperature = window["metrics"]["temperature"]
        assert temperature["min"] == min(lo for _, _, lo, _ in per_device)
        total = sum(c * mean for c, mean, *_ in per_device)
        assert temperature["mean"] == pytest.approx(total / window["count"], rel=1e-12)
    assert max(w["count"] for w in plant_a["windows"]) <= 80


async def test_metrics_count_the_batches(app: faust.App, worker: Worker) -> None:
    progress = worker.progress
    began: list[float] = []
    progress._clock = lambda: began.append(1.0) or 1.0  # type: ignore[method-assign]
    await score(app)
    assert began and progress.started is None  # every batch began and ended
    metrics = worker.metrics
    text = metrics.render().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edgeml_predictions_total", ())] == 122
    assert samples[("edgeml_dead_letters_total", (("error_class", "InvalidJson"),))] == 1
    assert sum(v for (name, _), v in samples.items() if name == "edgeml_readings_in_total") == 122
    assert samples[("edgeml_anomaly_score_count", ())] == 122
    assert samples[("edgeml_end_to_end_seconds_count", ())] == 122
    assert ("edgeml_model_inference_seconds_count", (("model", "residual-ensemble"),
                                                      ("version", "2"))) in samples  # fmt: skip
    names = set(iter_metric_names(text))
    assert {"process_resident_memory_bytes", "edgeml_processing_seconds_bucket"} <= names
    assert samples[("edgeml_observer_errors_total", (("observer", "analytics"),))] == 0


async def test_quiet_devices_are_swept(app: faust.App, worker: Worker) -> None:
    parts = worker
    parts.analytics.sweep_every_s = 0.0  # sweep after every batch
    windows = parts.windows
    late_ts = T0 + windows.retention_s + 600
    stub_producer(app)
    async with app.agents["score_readings"].test_context() as agent:
        for key, value in messages():
            await agent.put(value, key=key)
        # only dev-b keeps talking, an hour later; the others go quiet
        for i in range(3):
            body = reading("dev-b", 0, "plant-a", 20.0) | {"ts": late_ts + i, "seq": 1000 + i}
            await agent.put(orjson.dumps(body), key=b"dev-b")
    # test_context puts every event on partition 0: dev-a and dev-c share dev-b's partition,
    # whose watermark moved more than the retention past their last readings
    flush(worker)
    tables = parts.analytics_tables
    heads = dict(local_heads(PaneTables.over(tables.device_heads, tables.device_panes).heads, {0}))
    assert set(heads) == {"dev-b"}
    assert heads["dev-b"].watermark == late_ts + 2
    panes = [bytes(k).decode() for k in parts.analytics_tables.device_panes]
    assert all(k.startswith("dev-b@") for k in panes)  # the quiet devices left nothing


async def test_a_partial_delivered_twice_is_counted_once(app: faust.App, worker: Worker) -> None:
    """After a crash of the aggregating worker between its site-table flush and its offset
    commit, `aggregate_sites` sees the same partials again: each counts once."""
    recorded = await score(app)
    flush(worker)
    sent = partials_in(worker, recorded)
    parts = worker
    async with app.agents["aggregate_sites"].test_context() as agent:
        for _, key, value in sent:
            await agent.put(value, key=key)
        flush(worker)  # the site tables as the crashed worker left them
        for _, key, value in sent:  # re-delivered from the last committed offset
            await agent.put(value, key=key)
    flush(worker)
    store = PaneTables.over(
        parts.analytics_tables.site_heads, parts.analytics_tables.site_panes
    ).store()
    fleet = key_view(store, FLEET_KEY, "tumbling", parts.windows)
    assert fleet is not None and fleet["totals"]["count"] == 3 * 40 + 2
    assert fleet["totals"]["dead_letters"] == 1
    head = store.get_head(FLEET_KEY)
    assert head is not None and head.sources == {0: KeyPartial.from_bytes(sent[0][2])[1].offset}
