"""Follow an output topic and hand each decoded record to a callback (used by `edgeml tail`,
the demo and the dashboard's alert feed). Filters by device, minimum severity, anomalies.

The consumer joins no group: it reads every partition itself (no rebalance delay, and no
consumer group left behind on the broker per run), from the end or from the beginning.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from app.settings import Settings
from topics import catalog

__all__ = ["SEVERITIES", "TAIL_TOPICS", "TailFilter", "follow"]

TAIL_TOPICS = {
    "alerts": catalog.ALERTS,
    "predictions": catalog.PREDICTIONS,
    "dlq": catalog.DLQ,
    "late": catalog.LATE,
}
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class TailFilter:
    """Which records to show: one device or several (none = all), alerts at or above a
    severity, and (predictions) only anomalous readings."""

    device: str | None = None
    min_severity: str = "info"
    devices: frozenset[str] = frozenset()
    anomalies_only: bool = False

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise ValueError(
                f"severity must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}"
            )

    def accepts(self, record: dict[str, Any]) -> bool:
        if self.device is not None or self.devices:
            device = record.get("device_id")
            if device != self.device and device not in self.devices:
                return False
        if self.anomalies_only and not record.get("is_anomaly", True):
            return False
        severity = record.get("severity")
        if isinstance(severity, str) and severity in SEVERITIES:
            return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)
        return True


def _records(value: bytes | None, headers: list[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    """Decode one message into records: prediction envelopes fan out, dead letters keep the
    raw bytes (they are malformed by definition) with their headers decoded."""
    if headers and any(name.startswith("edgeml.error") for name, _ in headers):
        record: dict[str, Any] = {
            n.removeprefix("edgeml."): v.decode(errors="replace") for n, v in headers
        }
        record["original"] = (value or b"")[:200].decode(errors="replace")
        yield record
        return
    decoded = orjson.loads(value or b"null")
    if isinstance(decoded, dict) and "predictions" in decoded:
        yield from decoded["predictions"]
    elif isinstance(decoded, dict):
        yield decoded


async def follow(
    settings: Settings,
    kind: str,
    on_record: Callable[[dict[str, Any]], None],
    *,
    where: TailFilter = TailFilter(),
    from_beginning: bool = False,
    limit: int | None = None,
    timeout_s: float | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Consume `kind` until `limit` records matched or `timeout_s` passed; returns the count.

    `on_ready(topic)` is called once the consumer holds every partition at its start position
    (records produced after that are seen).
    """
    topic = settings.topic(TAIL_TOPICS[kind].name)
    config = settings.consumer_config(None)
    config["client_id"] = f"edgeml-tail-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(**config)
    await consumer.start()
    shown = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        if not await _hold_partitions(consumer, topic, from_beginning, deadline):
            return 0
        if on_ready is not None:
            on_ready(topic)
        while deadline is None or time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    for record in _records(message.value, list(message.headers or ())):
                        if where.accepts(record):
                            on_record(record)
                            shown += 1
                            if limit is not None and shown >= limit:
                                return shown
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return shown


async def _hold_partitions(
    consumer: AIOKafkaConsumer, topic: str, from_beginning: bool, deadline: float | None
) -> bool:
    """Subscribe without a group (every partition is assigned at once), then fix the start
    positions; False when the topic did not appear before `deadline`."""
    while topic not in await consumer.topics():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)
    consumer.subscribe([topic])
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)  # assigns; nothing is fetched yet
    partitions = list(consumer.assignment())
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolved now, not at the first fetch
    return True
