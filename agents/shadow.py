"""Shadow scoring in the worker: a batch observer feeds the challenger, a task publishes.

`app.factory` wires both when `EDGEML_FAILURE_CHALLENGER` (`Settings.failure_challenger`) is
set: the Scorer keeps its failure rows (`keep_failure_rows=True`), the observer runs before
`WriteStage.hold_batch`, and the ShadowScorer's thread is closed at shutdown.

The observer only copies the batch's failure-model rows into the shadow's bounded queue
(`ShadowScorer.submit` never blocks nor raises), so the champion's predictions are published
exactly as without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import faust
import numpy as np

from edgeml.agents.score import BatchObserver
from edgeml.models.inference.shadow import RowKey, ShadowScorer, pump
from edgeml.models.pipeline import BatchResult

__all__ = ["observer", "register"]


def observer(shadow: ShadowScorer) -> BatchObserver:
    """A `score_readings` observer submitting each batch's freshly scored failure rows."""

    def observe(result: BatchResult, _events: Sequence[faust.EventT]) -> None:
        rows: list[list[float]] = []
        keys: list[RowKey] = []
        for scored in result.scored:
            if scored.failure_row is not None and not scored.redelivered:
                rows.append(scored.failure_row)
                r = scored.reading
                keys.append((r.device_id, r.seq, r.ts))
        if rows:
            shadow.submit(np.asarray(rows, dtype=np.float32), keys=keys)

    return observe


def register(
    app: faust.App, shadow: ShadowScorer, topic: faust.TopicT, *, interval_s: float = 0.5
) -> None:
    """The `publish_comparisons` task: drained comparisons onto `topic` every `interval_s`
    (the topic is declared first: it is only written to, so Faust's subscriptions skip it)."""
    name = topic.get_topic_name()

    @app.task
    async def publish_comparisons() -> None:
        await topic.maybe_declare()

        async def send(key: bytes, value: bytes) -> None:
            await app.producer.send(name, key, value, None, None, None)

        await pump(shadow, send, interval_s=interval_s)
