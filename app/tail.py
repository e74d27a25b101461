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
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from edgeml.app.kafka_admin import BrokerUnavailable
from edgeml.app.settings import Settings
from edgeml.topics import catalog

__all__ = ["SEVERITIES", "TAIL_TOPICS", "TailFilter", "TailOutcome", "tail_topic"]

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


@dataclass(slots=True)
class TailOutcome:
    """How a `tail_topic` run ended: records read and matched, whether the topic existed, and
    why it stopped (`limit`, `end` of the topic for `until_end`, or `timeout`)."""

    topic: str
    read: int = 0
    matched: int = 0
    topic_found: bool = False
    stopped_by: str = "timeout"


async def tail_topic(
    settings: Settings,
    kind: str,
    on_record: Callable[[dict[str, Any]], None],
    *,
    where: TailFilter = TailFilter(),
    from_beginning: bool = False,
    limit: int | None = None,
    timeout_s: float | None = None,
    until_end: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> TailOutcome:
    """Consume `kind` until `limit` records matched or `timeout_s` passed, and say how it ended;
    with `until_end` it also stops once it has read every partition up to the end offsets it
    found when it started, and leaves out records written after that (a batch fetched at the
    end may hold some), so the same topic gives the same records; it does not wait for a
    missing topic to appear. `on_ready(topic)` is called once the consumer holds every
    partition at its start position (records produced after that are seen). Raises
    `BrokerUnavailable` (one line) when the broker cannot be reached."""
    outcome = TailOutcome(topic=settings.topic(TAIL_TOPICS[kind].name))
    config = settings.consumer_config(None)
    config["client_id"] = f"edgeml-tail-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(**config)
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()  # closes the half-open client (else "Unclosed" warnings)
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        # the end of a topic that does not exist is now: `until_end` waits for none to appear
        wait_until = time.monotonic() if until_end else deadline
        if not await _hold_partitions(consumer, outcome.topic, from_beginning, wait_until):
            return outcome
        outcome.topic_found = True
        ends = await consumer.end_offsets(list(consumer.assignment())) if until_end else {}
        if on_ready is not None:
            on_ready(outcome.topic)
        while deadline is None or time.monotonic() < deadline:
            if until_end and all(await _reached(consumer, ends)):
                outcome.stopped_by = "end"
                return outcome
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    if until_end and message.offset >= ends[tp]:
                        break  # produced after the start: not part of "up to the end"
                    outcome.read += 1
                    for record in _records(message.value, list(message.headers or ())):
                        if where.accepts(record):
                            on_record(record)
                            outcome.matched += 1
                            if limit is not None and outcome.matched >= limit:
                                outcome.stopped_by = "limit"
                                return outcome
            await asyncio.sleep(0)
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"lost Kafka at {settings.bootstrap_servers} while reading {outcome.topic}: {exc}"
        ) from None
    finally:
        await consumer.stop()
    return outcome


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[bool]:
    return [await consumer.position(tp) >= end for tp, end in ends.items()]


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
