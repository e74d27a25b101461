"""`score_readings`: batches of raw readings in, predictions, alerts and dead letters out."""

from __future__ import annotations

from typing import cast

import faust

from agents.publish import Publisher
from agents.state import TableStateStore
from app.settings import Settings
from models.pipeline import Inbound, ReadingPipeline
from topics.declare import Tables, Topics

__all__ = ["inbound", "register"]


def inbound(event: faust.EventT) -> Inbound:
    message = event.message
    return Inbound(message.key, message.value, message.topic, message.partition, message.offset)


def register(
    app: faust.App,
    settings: Settings,
    topics: Topics,
    tables: Tables,
    pipeline: ReadingPipeline,
    publisher: Publisher,
) -> faust.types.AgentT:
    @app.agent(topics.readings, name="score_readings")
    async def score_readings(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)  # StreamT does not declare take_events
        batches = concrete.take_events(settings.batch_max, within=settings.batch_within_s)
        async for events in batches:
            store = TableStateStore(tables.state_by_device, concrete, events)
            result = pipeline.process([inbound(event) for event in events], store)
            await publisher.publish(result.outbound)

    return score_readings
