"""`follow_models`: while the broker answers, read `model-registry` and `model-artifacts` and hand
each announced version of the served model, with its bundle, to the `ModelUpdater`.

Like the worker's `watch_model_registry`, a group-less consumer of every partition, read from
the beginning: both topics are compacted (the latest announcement per model id, the
latest bundle per `model_id@version`), so a device that comes back after days offline sees the
version to serve and its bytes without any offset of its own to keep. Announcement and bundle may
arrive in either order (the publisher writes the bundle first); the latest announcement waits
until its bundle is read, and while a health window runs (one swap at a time). Only bundles of
the served model id are kept in memory, at most `_KEPT_BUNDLES` of them (the memory cap).
Broker failures end the round and it starts again after the agent's backoff; nothing here can
stop scoring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from edgeml.edge.backoff import Backoff
from edgeml.edge.bundle import artifact_key
from edgeml.edge.updates import ModelRefused, ModelUpdater
from edgeml.models.manifest import ManifestError, ModelAnnouncement

__all__ = ["follow_models"]

log = logging.getLogger("edgeml.edge")
_KEPT_BUNDLES = 4
_TOPIC_WAIT_S = 5.0


async def follow_models(
    updater: ModelUpdater,
    consumer_config: dict[str, Any],
    registry_topic: str,
    artifacts_topic: str,
    stop: asyncio.Event,
    backoff: Backoff,
) -> None:
    """Run until `stop` is set (module docstring)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    attempt = 0
    while not stop.is_set():
        consumer = AIOKafkaConsumer(**consumer_config)
        try:
            await consumer.start()
            attempt = 0
            await _follow(consumer, updater, registry_topic, artifacts_topic, stop)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("model updates: broker round ended (%s)", exc)
        except Exception as exc:  # a bug here must not end model updates for good, nor scoring
            log.error("model updates: %s: %s; retrying", type(exc).__name__, exc)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.delay(attempt))
        attempt += 1


async def _follow(
    consumer: Any,
    updater: ModelUpdater,
    registry_topic: str,
    artifacts_topic: str,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():  # the platform declares the topics; a device may be first
        topics = await consumer.topics()
        if registry_topic in topics and artifacts_topic in topics:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _TOPIC_WAIT_S)
    else:
        return
    # group-less: every partition of both topics is assigned, from the earliest offset (no
    # committed offsets), also partitions added later; subscribing only to topics that exist
    # keeps the metadata requests from auto-creating them on a broker that would
    consumer.subscribe([registry_topic, artifacts_topic])
    log.info("following model updates on %s (bundles on %s)", registry_topic, artifacts_topic)
    prefix = f"{updater.model_id}@".encode()
    pending: ModelAnnouncement | None = None
    bundles: OrderedDict[bytes, bytes] = OrderedDict()
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                if tp.topic == artifacts_topic:
                    if record.key and record.key.startswith(prefix) and record.value:
                        bundles[record.key] = record.value
                        bundles.move_to_end(record.key)
                        while len(bundles) > _KEPT_BUNDLES:
                            bundles.popitem(last=False)
                    continue
                try:
                    announcement = ModelAnnouncement.from_bytes(record.value or b"")
                except ManifestError as exc:
                    log.error("model announcement at offset %s refused: %s", record.offset, exc)
                    continue
                if announcement.model_id == updater.model_id:  # the latest one decides
                    pending = announcement if updater.wants(announcement) else None
        if pending is None or updater.busy:
            continue
        if not updater.wants(pending):  # served now, or rolled back meanwhile
            pending = None
            continue
        data = bundles.get(artifact_key(pending.model_id, pending.version))
        if data is None or updater.judged(pending, data):
            continue  # its bundle is not read yet, or this very bundle was refused
        # stays pending: refused bytes are not judged twice, and a fixed bundle of the same
        # version (published again) is taken when read; a swapped-in one is no longer wanted
        await _take(updater, pending, data)


async def _take(updater: ModelUpdater, announcement: ModelAnnouncement, data: bytes) -> None:
    try:
        model = await asyncio.to_thread(updater.stage, announcement, data)
    except ModelRefused as exc:
        updater.refused(announcement, exc)
        return
    updater.begin(model)  # on the loop: between two batches
