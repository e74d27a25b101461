"""`learn_maintenance`: delayed failure/repair labels in, the online failure model learns."""

from __future__ import annotations

from typing import cast

import faust

from edgeml.agents.publish import Publisher
from edgeml.agents.score import inbound
from edgeml.agents.state import TableStateStore
from edgeml.agents.writeback import WriteBackTable
from edgeml.models.pipeline import ReadingPipeline
from edgeml.models.scoring import DeviceState

__all__ = ["register"]


def register(
    app: faust.App,
    maintenance: faust.TopicT,
    pipeline: ReadingPipeline,
    publisher: Publisher,
    states: WriteBackTable[DeviceState],
) -> faust.types.AgentT:
    # maintenance-events is keyed by device id with the same partition count as the readings,
    # so this event's partition is the device's state partition.
    @app.agent(maintenance, name="learn_maintenance")
    async def learn_maintenance(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)
        async for event in concrete.events():
            store = TableStateStore(states, [event])
            await publisher.publish(pipeline.learn_maintenance(inbound(event), store))

    return learn_maintenance
