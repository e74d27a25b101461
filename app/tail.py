"""Follow an output topic and hand each decoded record to a callback (used by `edgeml tail`
and the demo). Filters by device and minimum severity."""

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
    """Which records to show: one device (None = all) and alerts at or above a severity."""

    device: str | None = None
    min_severity: str = "info"

    def accepts(self, record: dict[str, Any]) -> bool:
        if self.device is not None and record.get("device_id") != self.device:
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
) -> int:
    """Consume `kind` until `limit` records matched or `timeout_s` passed; returns the count."""
    topic = settings.topic(TAIL_TOPICS[kind].name)
    consumer = AIOKafkaConsumer(
        topic,
        **{
            **settings.consumer_config(f"edgeml-tail-{uuid.uuid4().hex[:8]}"),
            "auto_offset_reset": "earliest" if from_beginning else "latest",
        },
    )
    await consumer.start()
    shown = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
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
