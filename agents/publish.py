"""Sends a batch's output records with the app's producer and waits until all are acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust

from edgeml.models.pipeline import Outbound, Role
from edgeml.topics.declare import Topics

__all__ = ["Publisher"]


class Publisher:
    """Routes `Outbound` records to their topics.

    The producer's own batching does the work (one `send` per record, no per-record await); the
    batch is awaited as a whole before the input events are acked, so a crash re-delivers the
    input rather than losing an output (at-least-once; `edgeml evaluate` counts duplicates).
    """

    def __init__(self, app: faust.App, topics: Topics) -> None:
        self._producer = app.producer
        self._names: dict[Role, str] = {
            "predictions": topics.predictions.get_topic_name(),
            "alerts": topics.alerts.get_topic_name(),
            "dlq": topics.dlq.get_topic_name(),
            "late": topics.late.get_topic_name(),
        }

    async def publish(self, records: Sequence[Outbound]) -> None:
        pending = [
            await self._producer.send(
                self._names[record.role], record.key, record.value, None, None, record.headers
            )
            for record in records
        ]
        if pending:
            await asyncio.gather(*pending)
