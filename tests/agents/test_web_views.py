"""The worker's web views through aiohttp's test client, over tables filled by the agents.

No broker: the producer is stubbed, the partition assignment is set by hand (every partition
owned by this worker unless a test says otherwise), and key partitions use Kafka's murmur2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import murmur2
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from edgeml.agents.analytics import PaneTables
from edgeml.app.factory import Worker, build_worker
from edgeml.app.settings import Settings
from edgeml.models.analytics import FLEET_KEY, key_view

T0 = 1_767_225_600.0
PARTITIONS = 4
DEVICES = {"dev-a": "plant-a", "dev-b": "plant-a", "dev-c": "plant-b", "dev-d": "plant-c"}


def _messages() -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(30):
        for n, (device, site) in enumerate(DEVICES.items()):
            body = {"device_id": device, "ts": T0 + 10.0 * i, "seq": i, "site": site,
                    "metrics": {"temperature": 20.0 + n + (i % 7) / 3}}  # fmt: skip
            out.append((device.encode(), orjson.dumps(body)))
    return out


def _partition(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _own_everything(app: faust.App, owner: str | None = None, skip: int | None = None) -> None:
    topics = [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    parts = [p for p in range(PARTITIONS) if p != skip]
    app.assignor.changelog_distribution = {  # type: ignore[attr-defined]
        owner or str(app.conf.canonical_url): {topic: parts for topic in topics}
    }


async def _fill(worker: Worker) -> None:
    """Score the messages with each on its key's partition, then fold the site partials."""
    app = worker.app
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes, *args: Any) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def send_soon(fut: Any) -> None:
        message = fut.message
        sent.append((message.channel.get_topic_name(), message.key, message.value))

    app.producer.send = send  # type: ignore[method-assign]
    app.producer.send_soon = send_soon  # type: ignore[method-assign]
    app.producer.key_partition = lambda topic, key: TP(topic, _partition(key))  # type: ignore[method-assign]
    async with app.agents["score_readings"].test_context() as agent:
        for key, value in _messages():
            await agent.put(value, key=key, partition=_partition(key))
    worker.stores.partials.flush()  # site partials go out with a commit
    partials = worker.analytics_tables.site_partials_topic.get_topic_name()
    async with app.agents["aggregate_sites"].test_context() as agent:
        for topic, key, value in sent:
            if topic == partials:
                await agent.put(value, key=key, partition=_partition(key))


async def _client(settings: Settings) -> tuple[Worker, TestClient[Any, Any]]:
    worker = build_worker(settings)
    app = worker.app
    app.finalize()
    app.flow_control.resume()
    await _fill(worker)
    _own_everything(app)
    app.web.init_server()
    client: TestClient[Any, Any] = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    return worker, client


@pytest.fixture
async def served(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[Worker, TestClient[Any, Any]]]:
    worker, client = await _client(settings_factory(batch_within_s=0.01, batch_max=8))
    yield worker, client
    await client.close()


async def _json(client: TestClient[Any, Any], path: str, status: int = 200, **kw: Any) -> Any:
    response = await client.get(path, **kw)
    assert response.status == status, await response.text()
    return await response.json()


async def test_device_views_serve_the_tables(served: tuple[Worker, TestClient]) -> None:
    parts, client = served
    bodies = {
        (device, kind): await _json(client, f"/analytics/devices/{device}?window={kind}")
        for device in DEVICES
        for kind in ("tumbling", "hopping")
    }  # served while the writes are still held back (no commit in a test context)
    parts.stores.flush()
    store = PaneTables.over(parts.analytics_tables.device_heads,
                            parts.analytics_tables.device_panes).store()  # fmt: skip
    for device in DEVICES:
        for kind in ("tumbling", "hopping"):
            body = bodies[device, kind]
            expected = key_view(store, device, kind, parts.windows)
            assert expected is not None
            assert body["windows"] == orjson.loads(orjson.dumps(expected["windows"]))
            assert body["device_id"] == device and body["totals"]["count"] == 30
    last = await _json(client, "/analytics/devices/dev-a?last=2")
    assert len(last["windows"]) == 2
    listing = await _json(client, "/analytics/devices")
    assert [d["device_id"] for d in listing["devices"]] == sorted(DEVICES)
    assert listing["windows"]["pane_s"] == 60
    plant_a = await _json(client, "/analytics/devices?site=plant-a")
    assert [d["device_id"] for d in plant_a["devices"]] == ["dev-a", "dev-b"]
    response = await client.get("/analytics/devices/dev-a")
    assert response.headers["X-Edgeml-Worker"] == str(parts.app.conf.canonical_url).rstrip("/")


async def test_fleet_and_sites(served: tuple[Worker, TestClient]) -> None:
    _, client = served
    fleet = await _json(client, "/analytics/fleet")
    assert fleet["totals"]["count"] == 120
    assert sum(w["count"] for w in fleet["windows"]) == 120
    assert [s["site"] for s in fleet["sites"]] == ["plant-a", "plant-b", "plant-c"]
    assert FLEET_KEY not in {s["site"] for s in fleet["sites"]}
    site = await _json(client, "/analytics/sites/plant-a?window=hopping")
    assert site["site"] == "plant-a" and site["totals"]["count"] == 60
    sites = await _json(client, "/analytics/sites")
    assert sites["count"] == 3


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/analytics/devices/nobody", 404, "no data for device_id 'nobody'"),
        ("/analytics/devices/dev-a?window=weekly", 400, "tumbling, hopping"),
        ("/analytics/devices/dev-a?last=x", 400, "whole number"),
        ("/analytics/fleet?window=sliding", 400, "tumbling, hopping"),
        ("/alerts/recent?severity=fatal", 400, "info, warning, critical"),
    ],
)
async def test_bad_requests_say_what_is_wrong(
    served: tuple[Worker, TestClient], path: str, status: int, message: str
) -> None:
    _, client = served
    body = await _json(client, path, status)
    assert message in body["error"]


async def test_a_listing_is_refused_rather_than_partial(
    served: tuple[Worker, TestClient],
) -> None:
    worker, client = served
    _own_everything(worker.app, skip=2)  # partition 2 has no owner: a rebalance is in progress
    response = await client.get("/analytics/devices")
    assert response.status == 503
    assert "no owner yet for partition(s) [2]" in await response.text()
    # another worker asking this one for a partition it does not own is refused too
    response = await client.get("/analytics/devices?scope=local&partitions=2")
    assert response.status == 503


async def test_a_key_owned_elsewhere_is_not_answered_here(
    served: tuple[Worker, TestClient],
) -> None:
    worker, client = served
    _own_everything(worker.app, owner="http://127.0.0.1:9")  # another worker, unreachable
    response = await client.get("/analytics/devices/dev-a")
    assert response.status != 200  # forwarded (and failed), never answered from local state


async def test_health_models_and_metrics(served: tuple[Worker, TestClient]) -> None:
    _, client = served
    assert await _json(client, "/health?probe=live") == {"live": True}
    assert (await _json(client, "/health", 503))["batch_in_progress_s"] == 0.0
    health = await _json(client, "/health", 503)  # nothing listens on 127.0.0.1:9
    assert health["live"] is True and health["broker"]["reachable"] is False
    assert set(health["lag"]) == {"total", "partitions"}
    models = await _json(client, "/models")
    roles = {m["role"]: m for m in models["models"]}
    assert {"anomaly", "failure_online"} <= set(roles)
    assert roles["anomaly"]["serving_latency"]["calls"] > 0
    response = await client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name for f in text_string_to_metric_families(await response.text())}
    assert {
        "edgeml_predictions",
        "edgeml_consumer_lag",
        "process_resident_memory_bytes",
    } <= families


async def test_faust_pages_stats_on_tables_off(served: tuple[Worker, TestClient]) -> None:
    _, client = served
    assert (await client.get("/")).status == 200  # Faust's stats page
    assert (await client.get("/table/")).status == 404


async def test_dashboard_and_its_files(served: tuple[Worker, TestClient]) -> None:
    _, client = served
    page = await client.get("/dashboard")
    assert page.status == 200 and 'src="/static/dashboard.js"' in await page.text()
    script = await client.get("/static/dashboard.js")
    assert script.status == 200 and "EventSource" in await script.text()
    assert (await client.get("/static/dashboard.css")).status == 200


async def _next_event(response: Any) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                return dict(orjson.loads(line[6:]))

    return await asyncio.wait_for(read(), 5.0)


async def test_alert_stream_sends_backlog_then_live_alerts(
    served: tuple[Worker, TestClient],
) -> None:
    worker, client = served
    feed = worker.feed
    feed.publish({"alert_id": "a1", "device_id": "dev-a", "severity": "critical", "state": "open"})
    response = await client.get("/alerts/stream?severity=warning")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert (await _next_event(response))["alert_id"] == "a1"  # the backlog
    feed.publish({"alert_id": "a2", "device_id": "dev-b", "severity": "info", "state": "open"})
    feed.publish({"alert_id": "a3", "device_id": "dev-b", "severity": "warning", "state": "open"})
    assert (await _next_event(response))["alert_id"] == "a3"  # info filtered out
    assert len(feed.subscribers) == 1
    recent = await _json(client, "/alerts/recent?device=dev-b")
    assert [a["alert_id"] for a in recent["alerts"]] == ["a2", "a3"]
    feed.close()
    rest = await asyncio.wait_for(response.content.read(), 5)  # returns: the stream ended
    assert rest.strip() == b""
    response.close()


async def test_a_batch_stuck_past_the_limit_fails_the_liveness_probe(
    served: tuple[Worker, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, client = served

    async def broker_answers(self: Any) -> dict[str, Any]:
        return {"reachable": True, "brokers": 1}

    # Stuck means stuck while the broker answers: waiting on a broker that is down is not
    # (tests/agents/test_health_probes.py), and nothing serves this test's bootstrap address.
    monkeypatch.setattr("edgeml.app.web.status.BrokerProbe.check", broker_answers)
    progress = worker.progress
    progress.started = time.monotonic() - 121.0  # EDGEML_STALL_AFTER_S is 120 by default
    stuck = await _json(client, "/health?probe=live", 503)
    assert stuck["live"] is False and stuck["batch_in_progress_s"] >= 121.0
    health = await _json(client, "/health", 503)
    assert health["live"] is False and health["status"] == "unavailable"
    progress.end()
    assert await _json(client, "/health?probe=live") == {"live": True}


async def test_bearer_token_guards_everything_but_health(
    settings_factory: Callable[..., Settings],
) -> None:
    _, client = await _client(settings_factory(web_token="s3cret", batch_max=8))
    try:
        assert (await client.get("/health?probe=live")).status == 200
        for path in ("/analytics/devices", "/metrics", "/dashboard", "/", "/alerts/recent"):
            response = await client.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/analytics/devices", headers=wrong)).status == 401
        right = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/analytics/devices", headers=right)).status == 200
        page = await client.get("/dashboard?access_token=s3cret")
        assert page.status == 200 and "edgeml_token" in page.cookies
        assert (await client.get("/analytics/fleet")).status == 200  # the cookie now
    finally:
        await client.close()
