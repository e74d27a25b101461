"""`score_readings`: batches of raw readings in, predictions, alerts and dead letters out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import faust

from agents.publish import Publisher
from agents.state import TableStateStore
from agents.writeback import WriteBackTable
from app.settings import Settings
from models.pipeline import BatchResult, Inbound, ReadingPipeline
from models.scoring import DeviceState
from topics.declare import Topics

__all__ = ["BatchObserver", "inbound", "register"]

# Called after each batch is scored and before its outputs are sent (metrics, analytics tables).
# Table writes use the batch's events for their partition (`agents.writeback.in_partition_of`).
BatchObserver = Callable[[BatchResult, Sequence[faust.EventT]], None]


def inbound(event: faust.EventT) -> Inbound:
    message = event.message
    return Inbound(message.key, message.value, message.topic, message.partition, message.offset)


def register(
    app: faust.App,
    settings: Settings,
    topics: Topics,
    pipeline: ReadingPipeline,
    publisher: Publisher,
    states: WriteBackTable[DeviceState],
    observers: Sequence[BatchObserver] = (),
) -> faust.types.AgentT:
    @app.agent(topics.readings, name="score_readings")
    async def score_readings(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)  # StreamT does not declare take_events
        batches = concrete.take_events(settings.batch_max, within=settings.batch_within_s)
        async for events in batches:
            store = TableStateStore(states, events)
            result = pipeline.process([inbound(event) for event in events], store)
            for observe in observers:
                observe(result, events)
            await publisher.publish(result.outbound)

    return score_readings
