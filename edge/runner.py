"""`BatchRunner`: one batch of raw messages in, scored, and committed in ONE SQLite transaction.

The step that makes the edge effectively-once locally: the pipeline scores against the
SQLite-backed state store (whose saves are only buffered), then one transaction writes the
device states, the batch's outbox rows, the outbox counters and the source position. A crash
before COMMIT leaves the file as before the batch: the restarted agent resumes the source at the
committed position and scores the batch again from the committed states, so every reading gets
exactly one prediction row (the states' seq marks also recognise re-sent readings: a source
that cannot resume by position, stdin, re-sends nothing twice as long as the device's seq grows).

A transaction that fails (disk full, I/O error) is rolled back, the buffered states and the
in-memory outbox totals are reset from the file, and the error is raised for the agent to retry
the same batch later; the pipeline's seq marks then see a first scoring again, not a re-delivery.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeml.edge.db import set_meta, transaction
from edgeml.edge.outbox import Outbox
from edgeml.edge.records import RecordOptions, batch_records
from edgeml.edge.state import SqliteStateStore
from edgeml.models.pipeline import BatchResult, Inbound, ReadingPipeline

__all__ = ["BatchOutcome", "BatchRunner", "position_key"]


def position_key(source_name: str) -> str:
    return f"position:{source_name}"


@dataclass(slots=True)
class BatchOutcome:
    """A committed batch: the pipeline's result and what the outbox kept of it."""

    result: BatchResult
    kept: int
    dropped: int


class BatchRunner:
    """Scores and commits batches (module docstring). Created once by the agent."""

    def __init__(
        self,
        pipeline: ReadingPipeline,
        states: SqliteStateStore,
        outbox: Outbox,
        options: RecordOptions,
        *,
        clock: Callable[[], float] = time.time,
        kill_in_batch: int = 0,
    ) -> None:
        self.pipeline = pipeline
        self.states = states
        self.outbox = outbox
        self.options = options
        self.conn: sqlite3.Connection = states.conn
        self._clock = clock
        self._kill_in_batch = kill_in_batch
        self.batches = 0

    def run(
        self, messages: Sequence[bytes], position: tuple[str, int] | None = None
    ) -> BatchOutcome:
        """Score `messages` and commit; `position` = (source name, messages consumed after
        this batch) is committed with it. Raises `sqlite3.Error` after a rollback."""
        batch = [Inbound(key=None, value=message, partition=0) for message in messages]
        result = self.pipeline.process(batch, self.states)
        records = batch_records(result, self.pipeline.scorer.model_ids, self._clock(), self.options)
        self.batches += 1
        try:
            with transaction(self.conn, durable=bool(result.alert_events)):
                self.states.write_pending()
                kept = sum(self.outbox.add(record) for record in records)
                self.outbox.expire()
                self.outbox.persist()
                if position is not None:
                    set_meta(self.conn, position_key(position[0]), str(position[1]))
                if self._kill_in_batch and self.batches == self._kill_in_batch:
                    os.kill(os.getpid(), signal.SIGKILL)  # test hook: crash before COMMIT
        except BaseException:
            self.states.discard()
            self.outbox.reload()
            raise
        self.states.committed()
        return BatchOutcome(result, kept, len(records) - kept)
