"""`Forwarder`: sends the outbox to the platform's Kafka topics when the broker is reachable.

Guarantees and why:

- Order: rows go out in outbox order (per device: scoring order), keyed by device id, so one
  device's records land on one partition in order. The producer is idempotent (acks=all,
  `enable_idempotence=True`): its own retries neither duplicate nor reorder a partition.
- Mark after ack: a round sends up to `chunk_rows` rows, waits for every ack, and deletes (marks
  sent) the longest acknowledged *prefix* of the round in one transaction; the rest stays and is
  sent again in the next round, after a backoff. Rows of a round in flight are never evicted
  nor expired by the outbox meanwhile, so an acknowledged row is never also counted as dropped.
- Duplicates: a crash between the ack and the mark (or a round cut after a partial ack) sends
  some rows again. Every record carries its unique id in headers (`edgeml.uid`, with
  `edgeml.device_id`, `edgeml.seq`, `edgeml.stream`), so consumers de-duplicate by
  (device_id, seq) per stream, as the worker's per-device seq mark does (docs/edge.md).
- Event time: each record's `ts` (event time) is kept in the value and in the header
  `edgeml.event_ts`; the Kafka timestamp is the send time, not the event time: a backlog sent
  after days offline, stamped with its event time, would be deleted by the topics' time
  retention as soon as it lands.
- Outages: connecting or sending fails -> the producer is closed and the next attempt waits a
  capped exponential backoff with jitter (`edge.backoff`); one WARNING per outage, then one per
  `log_every_s` while it lasts. A restarted agent simply resumes from the outbox.
- Bandwidth: an optional byte-rate cap (`RateLimiter`) on the record bytes sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from edgeml.edge.backoff import Backoff, RateLimiter
from edgeml.edge.db import transaction
from edgeml.edge.errors import SyncError
from edgeml.edge.metrics import EdgeMetrics
from edgeml.edge.outbox import STREAMS, Outbox, PendingRow

__all__ = ["Forwarder", "Producer", "record_headers"]

log = logging.getLogger("edgeml.edge.sync")


class Producer(Protocol):
    """What the forwarder needs of aiokafka's `AIOKafkaProducer` (tests pass a fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


def record_headers(row: PendingRow, agent_id: str) -> list[tuple[str, bytes]]:
    return [
        ("edgeml.uid", row.uid.encode()),
        ("edgeml.device_id", row.device_id.encode()),
        ("edgeml.seq", str(row.seq).encode()),
        ("edgeml.stream", row.stream.encode()),
        ("edgeml.event_ts", repr(row.event_ts).encode()),
        ("edgeml.origin", b"edge"),
        ("edgeml.agent_id", agent_id.encode()),
    ]


class Forwarder:
    """Forwards the outbox (module docstring). `topics` maps every stream to its topic name."""

    def __init__(
        self,
        outbox: Outbox,
        make_producer: Callable[[], Producer],
        topics: Mapping[str, str],
        *,
        agent_id: str,
        metrics: EdgeMetrics,
        backoff: Backoff | None = None,
        limiter: RateLimiter | None = None,
        chunk_rows: int = 500,
        log_every_s: float = 30.0,
        random_unit: Callable[[], float] = random.random,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.outbox = outbox
        self.conn: sqlite3.Connection = outbox.conn
        self._make_producer = make_producer
        missing = [stream for stream in STREAMS if stream not in topics]
        if missing:
            raise ValueError(f"no topic for streams {missing}")
        self.topics = dict(topics)
        self.agent_id = agent_id
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.limiter = limiter or RateLimiter(0)
        self.chunk_rows = chunk_rows
        self.log_every_s = log_every_s
        self._random = random_unit
        self._stop_timeout_s = stop_timeout_s
        self.wakeup = asyncio.Event()
        self.attempt = 0
        self.sent_rows = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, forward, back off on failure; until `stop` is set."""
        down_since: float | None = None
        last_log = 0.0
        failures = 0
        while not stop.is_set():
            producer = self._make_producer()
            try:
                await producer.start()
                self.metrics.broker_connected = True
                if down_since is not None:
                    log.warning(
                        "broker reachable again after %.1f s (%d failed attempts); syncing %d rows",
                        time.monotonic() - down_since, failures, self.outbox.total_rows,
                    )  # fmt: skip
                down_since, failures, self.attempt = None, 0, 0
                await self._forward(producer, stop)
            except Exception as exc:  # aiokafka errors, OSError, SyncError: back off, retry
                self.metrics.broker_connected = False
                self.metrics.sync_errors += 1
                failures += 1
                now = time.monotonic()
                if down_since is None or now - last_log >= self.log_every_s:
                    log.warning(
                        "sync to Kafka failed (%s); %d rows wait, retrying with backoff",
                        _one_line(exc), self.outbox.total_rows,
                    )  # fmt: skip
                    last_log = now
                    down_since = down_since or now
                delay = self.backoff.delay(self.attempt, self._random)
                self.attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                self.metrics.broker_connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), self._stop_timeout_s)

    async def _forward(self, producer: Producer, stop: asyncio.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            sent = await self.forward_once(producer)
            if sent:
                elapsed = max(time.monotonic() - began, 1e-6)
                self.metrics.sync_rate_rows_per_s = sent / elapsed
                continue
            self.metrics.sync_rate_rows_per_s = 0.0
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), 1.0)

    async def forward_once(self, producer: Producer) -> int:
        """One round: send the oldest unsent rows, mark the acknowledged prefix sent; returns
        rows marked. Raises `SyncError` (after marking) when not every row was acknowledged."""
        rows = self.outbox.fetch(self.chunk_rows)
        if not rows:
            self.outbox.release()
            return 0
        futures: list[Awaitable[Any]] = []
        error: BaseException | None = None
        try:
            for row in rows:
                await self.limiter.take(row.size)
                futures.append(
                    await producer.send(
                        self.topics[row.stream],
                        value=row.value,
                        key=row.key,
                        headers=record_headers(row, self.agent_id),
                    )
                )
        except Exception as exc:  # the rows sent so far may still be acknowledged
            error = exc
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = 0
        for outcome in results:
            if isinstance(outcome, BaseException):
                error = error or outcome
                break
            acked += 1
        try:
            with transaction(self.conn):
                self.outbox.mark_sent(rows[:acked])
                self.outbox.persist()
        except BaseException:
            self.outbox.release()
            self.outbox.reload()
            raise
        self.sent_rows += acked
        if error is not None:
            raise SyncError(f"{acked} of {len(rows)} rows acknowledged: {_one_line(error)}")
        return acked


def _one_line(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    if not text.startswith(name):  # aiokafka's errors already name themselves
        text = f"{name}: {text}"
    return " ".join(text.split())[:300]
