"""The whole agent in-process with a fake producer: it scores while the broker is down, raises
local alerts (stdout JSON and the webhook), reports backlog and drops on /health and /metrics,
and empties the outbox once the broker answers."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from edgeml.edge.agent import EdgeAgent
from edgeml.edge.alerts import LocalAlerts
from edgeml.edge.metrics import EdgeMetrics
from edgeml.edge.settings import EdgeSettings
from edgeml.edge.sources import ThreadedSource
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import AnomalyAlert

from .conftest import FakeProducer

CONFIG = SimConfig(devices=4, count=300, seed=7, warmup=30.0, incident_every=60.0)
TOTAL = CONFIG.devices * CONFIG.count


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


async def test_offline_scoring_local_alerts_metrics_then_sync(
    tmp_path: Path,
    unused_tcp_port_factory: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    posted: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/alerts", hook)
    hook_runner = web.AppRunner(hook_app)
    await hook_runner.setup()
    hook_port = unused_tcp_port_factory()
    await web.TCPSite(hook_runner, "127.0.0.1", hook_port).start()

    web_port = unused_tcp_port_factory()
    settings = EdgeSettings(
        db_path=tmp_path / "edge.db",
        agent_id="box-9",
        registry_root=tmp_path / "no-registry",  # the online failure model only: fast
        web_port=web_port,
        batch_max=50,
        raw_readings="downsample",
        raw_every=10,
        webhook_url=f"http://127.0.0.1:{hook_port}/alerts",
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    producer = FakeProducer(down=True)
    agent = EdgeAgent(settings, make_producer=lambda: producer)
    messages = [orjson.dumps(r.to_wire()) for r in simulate(CONFIG).readings()]
    messages.insert(100, b"not json")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(ThreadedSource("list", lambda: messages), "forever", stop))
    while not agent.source_ended:  # noqa: ASYNC110 (the agent has no event for this)
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{web_port}"

    status, body = await _get(base + "/health")
    health = json.loads(body)
    assert status == 200
    assert health["broker_connected"] is False and health["readings_scored"] == TOTAL
    raw_kept = TOTAL // 10
    alerts = agent.metrics.alerts_raised
    assert alerts > 0
    assert health["backlog_rows"] == TOTAL + raw_kept + alerts
    _, text = await _get(base + "/metrics")
    assert _metric(text, 'edgeml_edge_backlog_rows{stream="predictions"}') == TOTAL
    assert _metric(text, 'edgeml_edge_backlog_rows{stream="readings"}') == raw_kept
    assert _metric(text, "edgeml_edge_readings_scored_total") == TOTAL
    assert _metric(text, "edgeml_edge_dead_letters_total") == 1
    assert _metric(text, 'edgeml_edge_dropped_total{stream="alerts",reason="expired"}') == 0
    assert _metric(text, "edgeml_edge_broker_connected") == 0
    assert _metric(text, "edgeml_edge_sync_errors_total") >= 1

    producer.down = False
    while agent.outbox.total_rows:  # noqa: ASYNC110 (the mark happens inside the forwarder)
        await asyncio.sleep(0.01)
    _, text = await _get(base + "/metrics")
    assert _metric(text, 'edgeml_edge_sent_total{stream="predictions"}') == TOTAL
    assert _metric(text, 'edgeml_edge_oldest_unsent_age_seconds{stream="predictions"}') == 0
    stop.set()
    assert await task == 0
    await hook_runner.cleanup()

    printed = [json.loads(line)["alert"] for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == alerts
    key = lambda a: (a["alert_id"], a["state"])  # noqa: E731
    assert sorted(map(key, posted)) == sorted(map(key, printed))
    assert all(p["origin"] == "edge" and p["agent_id"] == "box-9" for p in printed)
    topics = {topic for topic, _, _, _ in producer.sent}
    assert topics == {"sensor-readings", "predictions", "anomaly-alerts"}


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_does_not_stop_local_alerts() -> None:
    metrics = EdgeMetrics()
    alerts = LocalAlerts(metrics, out=_ClosedPipe())
    alert = AnomalyAlert("d:1", "d", "open", "info", 1.0, 1.0, 1, 0.9, 0.5)
    alerts.announce(alert, {"origin": "edge"})
    alerts.announce(alert, {"origin": "edge"})  # the second one is not printed, nor raises
    assert metrics.alerts_raised == 2 and alerts.out is None


@pytest.mark.parametrize("kernel", ["compiled", "reference"])
def test_the_scoring_kernel_is_the_settings_choice(tmp_path: Path, kernel: str) -> None:
    settings = EdgeSettings(
        db_path=tmp_path / "edge.db",
        registry_root=tmp_path / "no-registry",
        scoring_kernel=kernel,  # type: ignore[arg-type]
    )
    agent = EdgeAgent(settings, make_producer=lambda: FakeProducer(down=True))
    assert agent.scorer.kernel == kernel
