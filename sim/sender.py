"""Turn a stream of readings into Kafka messages on a schedule, and send them.

`plan_messages` is pure: it batches readings per device into gateway envelopes, interleaves
maintenance events and malformed messages, and gives every message its due time (seconds after
the start, or None for "as soon as possible"). `send_messages` is the async loop that waits for
each due time, stamps `sent_at` (the scheduled send time, wall clock) on every reading, and
hands the message to a producer (an `aiokafka.AIOKafkaProducer`, or a fake in tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec
import orjson

from edgeml.sim.malformed import MalformedRecord
from edgeml.topics.catalog import MAINTENANCE, READINGS
from edgeml.topics.records import MaintenanceEvent, SensorReading

__all__ = [
    "Outgoing",
    "Pace",
    "Producer",
    "SendStats",
    "as_fast_as_possible",
    "event_time_pace",
    "fixed_rate",
    "plan_messages",
    "send_messages",
]

# due time (seconds after start, None = now) of the k-th reading, which has event time `ts`
Pace = Callable[[int, float], float | None]


def as_fast_as_possible(k: int, ts: float) -> float | None:
    return None


def fixed_rate(rate: float) -> Pace:
    """`rate` readings per second in total."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 readings/s, got {rate}")
    return lambda k, ts: k / rate


def event_time_pace(speed: float, first_ts: float) -> Pace:
    """Follow the event-time gaps, `speed` times faster than real time."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    return lambda k, ts: max(0.0, (ts - first_ts) / speed)


@dataclass(slots=True)
class Outgoing:
    """One message to send: readings (one, or an envelope), a maintenance event, or raw bytes."""

    topic: str  # catalog name, e.g. "sensor-readings"
    key: bytes | None
    due: float | None
    kind: Literal["readings", "maintenance", "malformed"]
    readings: list[SensorReading] = field(default_factory=list)
    envelope: bool = False
    raw: bytes = b""
    malformed_kind: str = ""

    def encode(self, sent_at: float) -> bytes:
        if self.kind != "readings":
            return self.raw
        wires = [msgspec.structs.replace(r, sent_at=sent_at).to_wire() for r in self.readings]
        return orjson.dumps({"readings": wires} if self.envelope else wires[0])


def plan_messages(
    events: Iterable[SensorReading | MaintenanceEvent],
    *,
    pace: Pace = as_fast_as_possible,
    batch: int = 1,
    malformed: Sequence[MalformedRecord] = (),
    total_readings: int = 0,
) -> Iterator[Outgoing]:
    """Messages in send order. With `batch` > 1 each device's readings go out in envelopes of
    `batch` (the last one may be shorter), due when their last reading is; a device's pending
    readings are flushed before its maintenance event. Malformed messages are spread evenly over
    the first `total_readings` readings."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    slots = _malformed_slots(len(malformed), total_readings)
    next_bad = 0
    buffers: dict[str, list[SensorReading]] = {}
    due: float | None = None
    k = -1
    for event in events:
        if isinstance(event, MaintenanceEvent):
            pending = buffers.pop(event.device_id, None)
            if pending:
                yield _readings_message(pending, due, batch)
            yield Outgoing(
                topic=MAINTENANCE.name,
                key=event.device_id.encode(),
                due=due,
                kind="maintenance",
                raw=orjson.dumps(event.to_wire()),
            )
            continue
        k += 1
        due = pace(k, event.ts)
        while next_bad < len(malformed) and slots[next_bad] <= k:
            yield _malformed_message(malformed[next_bad], due)
            next_bad += 1
        buffer = buffers.setdefault(event.device_id, [])
        buffer.append(event)
        if len(buffer) >= batch:
            del buffers[event.device_id]
            yield _readings_message(buffer, due, batch)
    for pending in buffers.values():
        yield _readings_message(pending, due, batch)
    for record in malformed[next_bad:]:
        yield _malformed_message(record, due)


def _malformed_slots(count: int, total: int) -> list[int]:
    return [int((j + 0.5) * total / count) for j in range(count)]


def _readings_message(readings: list[SensorReading], due: float | None, batch: int) -> Outgoing:
    return Outgoing(
        topic=READINGS.name,
        key=readings[0].device_id.encode(),
        due=due,
        kind="readings",
        readings=readings,
        envelope=batch > 1,
    )


def _malformed_message(record: MalformedRecord, due: float | None) -> Outgoing:
    return Outgoing(
        topic=READINGS.name,
        key=record.key,
        due=due,
        kind="malformed",
        raw=record.value,
        malformed_kind=record.kind,
    )


class Producer(Protocol):
    """The part of `aiokafka.AIOKafkaProducer` the sender uses."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]: ...


@dataclass(slots=True)
class SendStats:
    """What was handed to the producer and acknowledged."""

    readings: int = 0
    messages: int = 0
    malformed: int = 0
    maintenance: int = 0
    readings_per_device: dict[str, int] = field(default_factory=dict)
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)

    @property
    def rate(self) -> float:
        return self.readings / self.elapsed


async def send_messages(
    producer: Producer,
    messages: Iterable[Outgoing],
    *,
    topic_name: Callable[[str], str] = lambda name: name,
    started_at: float | None = None,
    on_sent: Callable[[SendStats], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    window: int = 2000,
    stats: SendStats | None = None,
) -> SendStats:
    """Send every message at its due time; wait for all acknowledgements before returning.

    `sent_at` is `started_at + due` (the scheduled time) when paced, else the wall clock at send.
    At most `window` unacknowledged messages are kept in flight. Pass `stats` to keep the counts
    when sending fails part-way (they count messages handed to the producer, not acknowledged).
    """
    if stats is None:
        stats = SendStats()
    stats.started_at = clock() if started_at is None else started_at
    in_flight: list[Awaitable[Any]] = []
    for message in messages:
        if message.due is None:
            sent_at = clock()
        else:
            sent_at = stats.started_at + message.due
            delay = sent_at - clock()
            if delay > 0:
                await sleep(delay)
        in_flight.append(
            await producer.send(
                topic_name(message.topic), value=message.encode(sent_at), key=message.key
            )
        )
        stats.messages += 1
        if message.kind == "readings":
            stats.readings += len(message.readings)
            for reading in message.readings:
                stats.readings_per_device[reading.device_id] = reading.seq + 1
        elif message.kind == "malformed":
            stats.malformed += 1
            kind = message.malformed_kind
            stats.malformed_by_kind[kind] = stats.malformed_by_kind.get(kind, 0) + 1
        else:
            stats.maintenance += 1
        if len(in_flight) >= window:
            await asyncio.gather(*in_flight)
            in_flight.clear()
        if on_sent is not None and (stats.messages % 200 == 0 or message.due is not None):
            on_sent(stats)
    await asyncio.gather(*in_flight)
    stats.finished_at = clock()
    if on_sent is not None:
        on_sent(stats)
    return stats
