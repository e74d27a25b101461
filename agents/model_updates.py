"""`watch_model_registry`: every worker follows the whole `model-registry` topic and hot-swaps
its failure model to each announced version.

Not a Faust agent on purpose: an agent's partitions are shared out across the group, but every
worker must see every announcement, so each worker reads the topic with its own group-less
consumer, from the beginning (the topic is compacted: the latest version per model).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from edgeml.models.pipeline import ReadingPipeline
from edgeml.models.registry import ModelRegistry
from edgeml.topics.errors import EdgeMLError

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(
    app: faust.App,
    pipeline: ReadingPipeline,
    registry: ModelRegistry,
    *,
    topic: str,
    partitions: int,
    consumer_config: Mapping[str, Any],
) -> None:
    """The `watch_model_registry` task: reads `topic` (broker-side name, `partitions`
    partitions) with a group-less consumer built from `consumer_config`."""

    @app.task
    async def watch_model_registry() -> None:
        consumer = AIOKafkaConsumer(**consumer_config)
        await consumer.start()
        try:
            assigned = await _partitions(consumer, topic, partitions)
            consumer.assign([TopicPartition(topic, p) for p in assigned])
            await consumer.seek_to_beginning()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        try:
                            ref = pipeline.apply_model_announcement(record.value or b"", registry)
                        except (EdgeMLError, ValueError, KeyError) as exc:
                            log.error(
                                "model announcement at offset %s refused: %s", record.offset, exc
                            )
                            continue
                        if ref is not None:
                            log.info("now serving %s", ref)
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, count: int) -> list[int]:
    # The worker declares the topic at start-up, concurrently with this task: wait for it.
    for _ in range(120):
        if topic in await consumer.topics():
            return list(range(count))
        await asyncio.sleep(0.5)
    raise EdgeMLError(f"topic {topic} does not exist")
