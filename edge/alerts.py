"""Local alerts: what the agent does with an alert while it may be offline.

Each alert event of a committed batch (so it is in the outbox before it is announced) becomes a
WARNING log line, one JSON line on stdout (`{"alert": {...}}`, the record as forwarded, for a
local supervisor to pipe), and, when a webhook URL is set, a POST of that JSON. A webhook that
fails or is slow is counted and logged, never retried and never holds scoring back (each post
runs as its own task with a timeout).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, TextIO

import orjson

from edgeml.edge.metrics import EdgeMetrics
from edgeml.topics.records import AnomalyAlert

__all__ = ["LocalAlerts"]

log = logging.getLogger("edgeml.edge.alerts")


class LocalAlerts:
    """Announces alerts locally (module docstring). One per agent."""

    def __init__(
        self,
        metrics: EdgeMetrics,
        *,
        webhook_url: str | None = None,
        webhook_timeout_s: float = 2.0,
        out: TextIO | None = None,
    ) -> None:
        self.metrics = metrics
        self.webhook_url = webhook_url
        self.webhook_timeout_s = webhook_timeout_s
        self.out: TextIO | None = out or sys.stdout
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: Any = None

    def announce(self, alert: AnomalyAlert, extra: dict[str, Any]) -> None:
        record = {**alert.to_wire(), **extra}
        drivers = ", ".join(d.metric for d in alert.drivers) or "-"
        log.warning(
            "alert %s %s device=%s severity=%s score=%.3f threshold=%.3f drivers=%s",
            alert.state, alert.alert_id, alert.device_id, alert.severity,
            alert.score, alert.threshold, drivers,
        )  # fmt: skip
        if self.out is not None:
            try:
                self.out.write(orjson.dumps({"alert": record}).decode() + "\n")
                self.out.flush()
            except (OSError, ValueError) as exc:  # stdout closed (a reader went away): go on
                log.warning("stdout is gone (%s): alerts are no longer printed", _one_line(exc))
                self.out = None
        self.metrics.alerts_raised += 1
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._post(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, record: dict[str, Any]) -> None:
        import aiohttp

        try:
            if self._session is None:
                timeout = aiohttp.ClientTimeout(total=self.webhook_timeout_s)
                self._session = aiohttp.ClientSession(timeout=timeout)
            async with self._session.post(
                self.webhook_url, data=orjson.dumps(record),
                headers={"Content-Type": "application/json"},
            ) as response:  # fmt: skip
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}")
        except Exception as exc:  # counted and logged: a local hook never stops scoring
            self.metrics.webhook_failures += 1
            log.warning("alert webhook %s failed: %s", self.webhook_url, _one_line(exc))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.webhook_timeout_s)
        if self._session is not None:
            await self._session.close()


def _one_line(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    if not text.startswith(name):  # aiokafka's errors already name themselves
        text = f"{name}: {text}"
    return " ".join(text.split())[:300]
