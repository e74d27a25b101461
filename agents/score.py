"""`score_readings`: batches of raw readings in, predictions, alerts and dead letters out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import cast

import faust

from edgeml.agents.publish import Publisher
from edgeml.agents.state import TableStateStore
from edgeml.agents.writeback import WriteBackTable
from edgeml.models.pipeline import BatchResult, Inbound, ReadingPipeline
from edgeml.models.scoring import DeviceState

__all__ = ["BatchObserver", "BatchProgress", "inbound", "inbounds", "register"]

# Called after each batch is scored and before its outputs are sent (metrics, analytics tables).
# Table writes use the batch's events for their partition (`agents.writeback.in_partition_of`).
BatchObserver = Callable[[BatchResult, Sequence[faust.EventT]], None]


class BatchProgress:
    """When the batch `score_readings` is working on began (None between batches): a batch
    that never finishes (a send that never completes) is how a stuck worker shows, and
    `/health?probe=live` reports it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started: float | None = None

    def begin(self) -> None:
        self.started = self._clock()

    def end(self) -> None:
        self.started = None

    def in_progress_s(self) -> float:
        return 0.0 if self.started is None else self._clock() - self.started


def inbound(event: faust.EventT) -> Inbound:
    message = event.message
    return Inbound(message.key, message.value, message.topic, message.partition, message.offset)


def inbounds(events: Sequence[faust.EventT]) -> list[Inbound]:
    """`inbound` of every event of a batch, in order."""
    return [inbound(event) for event in events]


def register(
    app: faust.App,
    readings: faust.TopicT,
    pipeline: ReadingPipeline,
    publisher: Publisher,
    states: WriteBackTable[DeviceState],
    progress: BatchProgress,
    observers: Sequence[BatchObserver] = (),
    *,
    batch_max: int,
    batch_within_s: float,
) -> faust.types.AgentT:
    """The `score_readings` agent on `readings`: batches of up to `batch_max` messages, or
    what arrived within `batch_within_s`, scored, observed, then published."""

    @app.agent(readings, name="score_readings")
    async def score_readings(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)  # StreamT does not declare take_events
        batches = concrete.take_events(batch_max, within=batch_within_s)
        async for events in batches:
            progress.begin()
            try:  # a batch that raised is not "in progress" forever (the stall detector)
                store = TableStateStore(states, events)
                result = pipeline.process(inbounds(events), store)
                for observe in observers:
                    observe(result, events)
                await publisher.publish(result.outbound)
                store.release()  # outputs acked: the batch's held writes may now be flushed
            finally:
                progress.end()

    return score_readings
