"""The checker: reads what the system under test wrote and turns it into figures.

- `Probe` reads topic end offsets (progress and lag without consuming) and reads offset ranges
  back after a run (the record timestamps are the producer's send times in the worker, so a
  drain rate needs no consumer racing the worker for CPU while it runs);
- `Live` consumes output topics while a run goes on and stamps each message's arrival time (for
  latency: arrival - the reading's scheduled `sent_at`);
- `readings_in` understands every payload on the way (a reading, `{"readings": [...]}`, a
  prediction, `{"predictions": [...]}`), `tally` counts lost and duplicated readings, and
  `drain_rate` computes readings/s from output timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Live", "Probe", "Tally", "drain_rate", "readings_in", "tally"]


def readings_in(value: bytes) -> list[dict[str, Any]]:
    """The reading-like objects in one message (each has device_id, seq, sent_at)."""
    obj = orjson.loads(value)
    if isinstance(obj, dict):
        for key in ("readings", "predictions"):
            items = obj.get(key)
            if isinstance(items, list):
                return items
        return [obj]
    return []


@dataclass
class Tally:
    """Readings seen in outputs against the readings sent."""

    expected: int
    seen: int = 0
    unique: int = 0
    duplicates: int = 0
    lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "seen": self.seen,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "lost": self.lost,
        }


def tally(items: Iterable[dict[str, Any]], expected: int) -> Tally:
    """Lost = expected readings never seen; duplicates = readings seen more than once."""
    keys: set[tuple[str, int]] = set()
    seen = 0
    for item in items:
        seen += 1
        keys.add((item["device_id"], item["seq"]))
    return Tally(
        expected=expected,
        seen=seen,
        unique=len(keys),
        duplicates=seen - len(keys),
        lost=max(expected - len(keys), 0),
    )


def drain_rate(
    stamps: Sequence[tuple[int, int]], low: float = 0.1, high: float = 0.95
) -> dict[str, float]:
    """Readings/s from `(timestamp_ms, readings)` of output messages.

    Measured between the moments `low` and `high` of all readings had been written, which drops
    the start-up (connections, first batches, new device states) and the ragged end.
    """
    if len(stamps) < 2:
        return {"rate": 0.0, "window_s": 0.0, "span_s": 0.0}
    ordered = sorted(stamps)
    total = sum(n for _, n in ordered)
    cumulative = 0
    t_low = t_high = None
    c_low = c_high = 0
    for ts, n in ordered:
        cumulative += n
        if t_low is None and cumulative >= low * total:
            t_low, c_low = ts, cumulative
        if t_high is None and cumulative >= high * total:
            t_high, c_high = ts, cumulative
    assert t_low is not None and t_high is not None
    span = (ordered[-1][0] - ordered[0][0]) / 1000.0
    window = (t_high - t_low) / 1000.0
    if window <= 0.05:  # too short a run to trim: use the whole span
        window, c_high, c_low = span, total, ordered[0][1]
    rate = (c_high - c_low) / window if window > 0 else 0.0
    return {"rate": round(rate, 1), "window_s": round(window, 3), "span_s": round(span, 3)}


class Probe:
    """End offsets and read-backs with a group-less kafka-python consumer."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer

        self.bootstrap = bootstrap
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="edgeml-bench-probe"
        )

    def close(self) -> None:
        self._consumer.close()

    def partitions(self, topic: str, timeout_s: float = 30.0) -> list[Any]:
        from kafka import TopicPartition

        deadline = time.monotonic() + timeout_s
        while True:
            found = self._consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions after {timeout_s:.0f} s")
            self._consumer.topics()  # refreshes metadata
            time.sleep(0.2)

    def end(self, topic: str) -> dict[Any, int]:
        parts = self.partitions(topic)
        return dict(self._consumer.end_offsets(parts))

    @staticmethod
    def total(offsets: dict[Any, int]) -> int:
        return sum(offsets.values())

    def read(
        self, topic: str, start: dict[Any, int], stop: dict[Any, int] | None = None
    ) -> list[Any]:
        """Every record of `topic` from `start` up to `stop` (default: the current end)."""
        from kafka import KafkaConsumer

        stop = stop or self.end(topic)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            client_id="edgeml-bench-reader",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        try:
            todo = {tp: end for tp, end in stop.items() if end > start.get(tp, 0)}
            consumer.assign(list(stop))
            for tp in stop:
                consumer.seek(tp, start.get(tp, 0))
            records: list[Any] = []
            deadline = time.monotonic() + 120.0
            while todo and time.monotonic() < deadline:
                for tp, batch in consumer.poll(timeout_ms=500, max_records=50_000).items():
                    end = stop[tp]
                    records.extend(r for r in batch if r.offset < end)
                    if batch and batch[-1].offset >= end - 1:
                        todo.pop(tp, None)
            return records
        finally:
            consumer.close()


@dataclass
class Arrival:
    topic: str
    arrived: float
    value: bytes
    timestamp_ms: int = 0  # the record's timestamp: when the system under test sent it


@dataclass
class Live:
    """Consumes topics from given offsets and stamps every message with its arrival time."""

    bootstrap: str
    start: dict[Any, int]
    arrivals: list[Arrival] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            client_id="edgeml-bench-live",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._consumer.assign(list(self.start))
        for tp, offset in self.start.items():
            self._consumer.seek(tp, offset)

    def poll(self, timeout_ms: int = 20) -> int:
        got = self._consumer.poll(timeout_ms=timeout_ms)
        now = time.time()
        n = 0
        for tp, batch in got.items():
            for record in batch:
                self.arrivals.append(Arrival(tp.topic, now, record.value, record.timestamp))
            n += len(batch)
            self.counts[tp.topic] = self.counts.get(tp.topic, 0) + len(batch)
        return n

    def close(self) -> None:
        self._consumer.close()
