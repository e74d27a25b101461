"""Live alerts for browsers: `GET /alerts/stream` (Server-Sent Events), `GET /alerts/recent`.

Each worker runs one `AlertFeed`: a Kafka consumer of *every* partition of `anomaly-alerts`
outside the app's consumer group (a browser connected to any worker sees the whole fleet's
alerts, not only that worker's partitions). It keeps the last `alerts_backlog` alerts, which a
new browser gets first, and fans each new alert out to the connected browsers' queues; a slow
browser loses its oldest queued alerts rather than slowing the others. Filters:
`?device=ID&severity=warning` (minimum severity), as `edgeml tail`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from edgeml.app.settings import Settings
from edgeml.app.tail import SEVERITIES, TailFilter
from edgeml.topics import catalog

__all__ = ["AlertFeed", "Subscription", "register", "sse_event"]

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0


def sse_event(record: dict[str, Any], event_id: str | None = None) -> bytes:
    """One Server-Sent Event (`event: alert`) carrying `record` as JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: alert\ndata: ".encode() + orjson.dumps(record) + b"\n\n"


class Subscription:
    """One browser's queue of alerts that pass its filter; `None` means the feed closed."""

    def __init__(self, where: TailFilter, size: int = 256) -> None:
        self.where = where
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, item: tuple[str, dict[str, Any]] | None) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # drop the oldest
                self.dropped += 1


class AlertFeed:
    """The fleet's alerts as they are produced, for this worker's browsers. Created once per
    app by `create_app`; `run()` is the app task that consumes; tests call `publish`."""

    def __init__(
        self,
        settings: Settings,
        *,
        backlog: int = 200,
        on_clients: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.recent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=max(backlog, 1))
        self.subscribers: set[Subscription] = set()
        self.consumed = 0
        self.closed = False
        self._on_clients = on_clients or (lambda n: None)
        self._serial = 0

    def publish(self, record: dict[str, Any], event_id: str | None = None) -> None:
        if event_id is None:
            self._serial += 1
            event_id = f"local-{self._serial}"
        item = (event_id, record)
        self.recent.append(item)
        for subscription in self.subscribers:
            if subscription.where.accepts(record):
                subscription.offer(item)

    @contextlib.contextmanager
    def subscribe(self, where: TailFilter) -> Iterator[Subscription]:
        subscription = Subscription(where)
        self.subscribers.add(subscription)
        self._on_clients(len(self.subscribers))
        try:
            yield subscription
        finally:
            self.subscribers.discard(subscription)
            self._on_clients(len(self.subscribers))

    def backlog(self, where: TailFilter, limit: int | None = None) -> list[tuple[str, dict]]:
        items = [item for item in self.recent if where.accepts(item[1])]
        return items[-limit:] if limit else items

    def close(self) -> None:
        """End every open stream (the web server is shutting down)."""
        self.closed = True
        for subscription in list(self.subscribers):
            subscription.offer(None)

    async def run(self) -> None:
        """Follow `anomaly-alerts` from its end until cancelled; reconnects on errors."""
        from aiokafka import AIOKafkaConsumer

        topic = self.settings.topic(catalog.ALERTS.name)
        while not self.closed:
            consumer = AIOKafkaConsumer(
                **self.settings.kafka_client_config(),
                group_id=None,  # no group: every partition, whoever owns it in the app
                enable_auto_commit=False,
                auto_offset_reset="latest",
                client_id=f"{self.settings.app_id}-alert-feed",
            )
            try:
                await consumer.start()
                await _until_exists(consumer, topic)
                consumer.subscribe([topic])  # no group: all partitions, from their end
                async for message in consumer:
                    try:
                        record = orjson.loads(message.value or b"null")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(record, dict):
                        self.consumed += 1
                        self.publish(record, f"{message.partition}-{message.offset}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("alert feed: %s; reconnecting in 2 s", exc)
                await asyncio.sleep(2.0)
            finally:
                await consumer.stop()


async def _until_exists(consumer: Any, topic: str) -> None:
    """Wait for the topic the worker declares as it starts (subscribing to a missing topic
    would wait for the next metadata refresh, minutes later)."""
    for _ in itertools.count():
        if topic in await consumer.topics():
            return
        await asyncio.sleep(0.5)


def _filter(request: Request) -> TailFilter:
    severity = request.query.get("severity", "info")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    return TailFilter(device=request.query.get("device") or None, min_severity=severity)


def register(app: faust.App, feed: AlertFeed) -> None:
    @app.page("/alerts/recent", name="alerts-recent")
    class RecentAlerts(View):
        async def get(self, request: Request) -> Response:
            try:
                where = _filter(request)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            limit = int(request.query.get("limit", "50") or 50)
            alerts = [record for _, record in feed.backlog(where, limit)]
            return self.json({"alerts": alerts, "count": len(alerts)})

    @app.page("/alerts/stream", name="alerts-stream")
    class AlertStream(View):
        async def get(self, request: Request) -> Any:
            try:
                where = _filter(request)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            response = aioweb.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)  # type: ignore[arg-type]
            with feed.subscribe(where) as subscription:
                try:
                    await response.write(b"retry: 3000\n\n")
                    for event_id, record in feed.backlog(where):
                        await response.write(sse_event(record, event_id))
                    while not feed.closed:
                        try:
                            item = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
                        except TimeoutError:
                            await response.write(b": keep-alive\n\n")
                            continue
                        if item is None:
                            break
                        await response.write(sse_event(item[1], item[0]))
                except (ConnectionResetError, ConnectionError):
                    pass  # the browser went away
            return response

    async def close_streams(_: aioweb.Application) -> None:
        feed.close()

    app.web.web_app.on_shutdown.append(close_streams)  # type: ignore[attr-defined]

    @app.task
    async def follow_alerts() -> None:
        await feed.run()
