"""`/health` and `/health?probe=live` on a real app's web server (no broker): a crashed agent
fails both; a batch waiting on an unreachable broker fails readiness only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeml.app.factory import Worker, build_worker
from edgeml.app.lifecycle import life_of
from edgeml.app.settings import Settings


@pytest.fixture
async def served(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[Worker, TestClient[Any, Any]]]:
    worker = build_worker(settings_factory())
    app = worker.app
    app.finalize()
    app.web.init_server()
    client: TestClient[Any, Any] = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    yield worker, client
    await client.close()


async def _get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status, await response.json()


async def test_a_crashed_agent_fails_liveness_and_readiness(
    served: tuple[Worker, TestClient[Any, Any]],
) -> None:
    worker, client = served
    assert await _get(client, "/health?probe=live") == (200, {"live": True})
    life_of(worker.app).record_crash(
        "score_readings", ValueError("cannot convert float NaN to integer")
    )
    why = "agent score_readings crashed: ValueError('cannot convert float NaN to integer')"
    status, body = await _get(client, "/health?probe=live")
    assert (status, body["live"], body["reason"]) == (503, False, why)
    status, body = await _get(client, "/health")
    assert (status, body["status"], body["reason"], body["crashed"]) == (
        503,
        "unavailable",
        why,
        why,
    )


async def test_waiting_on_an_unreachable_broker_is_alive_but_not_ready(
    served: tuple[Worker, TestClient[Any, Any]],
) -> None:
    worker, client = served  # nothing serves this test's bootstrap address
    progress = worker.progress
    progress.started = time.monotonic() - 600.0  # far past EDGEML_STALL_AFTER_S (120 s)
    status, body = await _get(client, "/health?probe=live")
    assert status == 200 and body["live"] is True
    assert body["reason"].startswith("waiting for the broker: batch in progress for")
    assert body["batch_in_progress_s"] >= 600.0
    status, body = await _get(client, "/health")
    assert status == 503 and body["live"] is True and body["broker"]["reachable"] is False
    assert body["status"] == "unavailable"
