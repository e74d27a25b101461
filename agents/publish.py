"""Sends a batch's output records with the app's producer and waits until all are acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
from faust.exceptions import NotReady

from edgeml.models.pipeline import Outbound, Role
from edgeml.topics.declare import Topics

__all__ = ["Publisher"]

# Most (topic, key) partitions remembered; past it the memo starts afresh (a worker sees its
# devices' keys, a few thousand, on four output topics).
PARTITION_MEMO_MAX = 65_536


class Publisher:
    """Routes `Outbound` records to their topics.

    The producer's own batching does the work (one `send` per record, no per-record await); the
    batch is awaited as a whole before the input events are acked, so a crash re-delivers the
    input rather than losing an output (at-least-once; `edgeml evaluate` counts duplicates).
    Records go out in the order given, so a device's records keep their order on each topic.

    Each keyed record is sent with its partition named, from a memo of Faust's own
    `Producer.key_partition` (the producer's partitioner, the one `send` would run): aiokafka's
    partitioner is murmur2 in pure Python, about 3 µs per record, paid once per key instead of
    once per record (issue #12 item 4, docs/benchmarks.md). A key whose topic has no metadata
    yet, and a record without key, are sent without partition (the producer picks, as before).
    The memo is dropped at every rebalance, so a topic given more partitions is re-hashed by
    the next one (until then its keys keep their partition, and their order).
    """

    def __init__(self, app: faust.App, topics: Topics) -> None:
        self._producer = app.producer
        self._names: dict[Role, str] = {
            "predictions": topics.predictions.get_topic_name(),
            "alerts": topics.alerts.get_topic_name(),
            "dlq": topics.dlq.get_topic_name(),
            "late": topics.late.get_topic_name(),
        }
        self._partitions: dict[tuple[str, bytes], int] = {}

        @app.on_partitions_assigned.connect
        async def forget_partitions(sender: Any, /, *args: Any, **kwargs: Any) -> None:
            self.forget_partitions()

    def forget_partitions(self) -> None:
        """Drop the (topic, key) -> partition memo (rebalances: partitions may have changed)."""
        self._partitions.clear()

    def partition_of(self, topic: str, key: bytes | None) -> int | None:
        """The partition the producer's partitioner gives `key` on `topic` (memoised), or
        None (no key, or no metadata for the topic yet: the producer then picks)."""
        if key is None:
            return None
        memo = self._partitions
        partition = memo.get((topic, key))
        if partition is not None:
            return partition
        try:
            partition = self._producer.key_partition(topic, key).partition
        except (TypeError, NotReady):
            # aiokafka has no partitions for the topic yet (`list(None)`), or the producer is
            # not started: `send` picks the partition, as it would without the memo
            return None
        if partition is None or partition < 0:
            return None
        if len(memo) >= PARTITION_MEMO_MAX:
            memo.clear()
        memo[(topic, key)] = partition
        return partition

    async def publish(self, records: Sequence[Outbound]) -> None:
        if not records:
            return
        send = self._producer.send
        names = self._names
        partition_of = self.partition_of
        pending = []
        for record in records:
            topic = names[record.role]
            key = record.key
            partition = partition_of(topic, key)
            pending.append(await send(topic, key, record.value, partition, None, record.headers))
        await asyncio.gather(*pending)
