"""The agent's small local web server: `/health` (JSON) and `/metrics` (Prometheus text).

Bound to 127.0.0.1 by default: it is for the box's own supervisor and a local Prometheus agent,
not for the network (no token, nothing writable). `/health` answers 200 while the agent runs:
being offline is the normal case on a device, so the broker state is reported, not failed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = ["start_web"]

_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


async def start_web(
    host: str,
    port: int,
    health: Callable[[], dict[str, Any]],
    metrics_text: Callable[[], str],
) -> web.AppRunner:
    """Start serving; returns the runner (`await runner.cleanup()` stops it)."""

    async def health_view(request: web.Request) -> web.Response:
        return web.json_response({**health(), "time": time.time()})

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=metrics_text().encode(), headers={"Content-Type": _PROMETHEUS})

    app = web.Application()
    app.router.add_get("/health", health_view)
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
