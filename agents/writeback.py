"""Table writes held back until Faust commits offsets, and never flushed ahead of the outputs
they explain.

Write-back. Every write to a Faust table is also a changelog message through Faust's
ProducerBuffer. At single-reading messages from many devices that was one state write and two
analytics writes per reading, about 265 µs of a reading's 458 µs (docs/benchmarks.md). A
`WriteBackTable` keeps the newest value of each key in memory and writes it when Faust starts an
offset commit (`CommitFlusher`, a Faust sensor): a device sending N readings between two commits
costs one write instead of N.

Held until delivered. Faust's commit runs concurrently with `score_readings`: it can start while
the agent awaits `publisher.publish` of a batch whose state is already computed. Flushing that
state then (as this module did first) put the stored state ahead of the delivered outputs, and a
kill before the outputs were acked left state that had learned readings whose predictions never
went out (measured in issue #9: 3-10k readings marked `late` after a kill). Device state now
records the highest `seq` applied and suppresses re-delivered readings, which is only safe if a
stored seq implies its outputs were delivered. So each buffer has three layers, and a
`WriteStage` per app moves writes between them:

- *staged*: written since the last `begin()`;
- *held*: written by the scoring batch in flight. `score_readings` calls `begin()` when it makes
  the batch's store (`agents.state.TableStateStore`), `hold()` after its observers (the last
  observer, `app.observability`) and `release()` once `publisher.publish` returned. The agent
  does not await between `begin` and `hold`, and nothing else runs on the event loop then, so
  the writes staged in between are exactly that batch's (state, device analytics, site
  partials). A key that is held stays held until released, whoever writes it meanwhile;
- *released*: flushed by the next commit, with staged writes of other writers (maintenance
  labels, `aggregate_sites`, which never hold: they are done when the commit can run).

Values are changed in place by their readers. A released value read again by a writer (the next
batch, before a flush) is encoded first ("frozen"), so the flush writes what was released and not
the next batch's in-flight changes; a value read once per commit interval is still encoded once.
(Measured: `DeviceState.to_bytes` ≈ 13 µs against ≈ 50 µs of `process` per reading, so a device
in every batch pays ≈ 13 µs per batch, not per reading; the changelog writes stay one per key
per commit.)

What a crash recovers. Faust's commit runs `on_commit_initiated` (the flush), picks the acked
offsets, waits for the producer (changelog messages and site partials included; all of them only
with `agents.delivery`'s buffer: Faust's own flush may return with messages left), then commits.
A batch's events are acked after its `release()`. Hence, at any kill:

- committed offsets are never ahead of the flushed state (as before): nothing is lost;
- flushed state is ahead of the committed offsets only by batches whose outputs were acked.
  Their re-delivered readings are recognised by the per-device `seq` (no new prediction, not
  `late`, not learned or counted twice); readings not flushed are simply redone;
- site partials of a batch go out in the same flush as its state, each tagged with its source
  partition and input offset, and `aggregate_sites` ignores one it already applied.

A kill *during* a flush's sends leaves the local state ahead of partials still in the
producer buffer; the partials outbox written by the same flush resends them after the restart
(`agents.analytics`). The remaining windows are a kill inside the flush's synchronous local
writes, a fresh-disk restart after some of a flush's changelog messages were delivered and
others not (Kafka transactions would close both), and an exception escaping `process` before
`hold()` (its partial writes stay flushable; item 3 stops the worker then).
"""

from __future__ import annotations

import logging
import os
import signal
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

import faust
from faust.streams import _current_event

__all__ = [
    "CommitFlusher",
    "KillAfterFlush",
    "StagedBuffer",
    "WriteBackTable",
    "WriteStage",
    "in_partition_of",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def in_partition_of(event: faust.EventT) -> None:
    """Make `event` the current event of this task before touching a table key of its partition.

    Faust reads and writes a table key in the RocksDB bucket and changelog partition of
    `faust.streams.current_event()`, a task-local context variable; after `take_events` that
    is the batch's last event, which may belong to another partition than the key. Only that
    variable is set, never `Stream.current_event`: the stream's drainer task reads the latter
    when it buffers the next message for `take_events`, and setting it after an await in an
    agent makes `take_events` record the wrong event (measured: 101 of 3,000 messages lost and
    101 duplicated). Faust has no public call for this.
    """
    _current_event.set(weakref.ref(event))


class StagedBuffer(Protocol):
    """What a `WriteStage` moves between layers and a `CommitFlusher` flushes."""

    def close_window(self) -> None:
        """Staged writes become released (held keys: held)."""

    def hold(self) -> None:
        """Staged writes become held."""

    def release(self) -> None:
        """Held writes become released."""

    def flush(self) -> int:
        """Write released and unheld staged writes; return how many."""

    def __len__(self) -> int: ...


class WriteStage:
    """The staged → held → released lifecycle of one app's write-back buffers (see the module
    docstring). One per app, found with `WriteStage.of(app)`; buffers join it when made."""

    def __init__(self) -> None:
        self.members: list[StagedBuffer] = []
        self.written = 0  # values flushed so far, every member (the fault hook reads it)

    @classmethod
    def of(cls, app: faust.types.AppT) -> WriteStage:
        stage = _STAGES.get(app)
        if stage is None:
            stage = _STAGES[app] = cls()
        return stage

    def join(self, member: StagedBuffer) -> None:
        self.members.append(member)

    def begin(self) -> None:
        """A writer starts a batch: what was staged before is done (released)."""
        for member in self.members:
            member.close_window()

    def hold(self) -> None:
        """Everything staged since `begin` belongs to a batch whose outputs are not acked."""
        for member in self.members:
            member.hold()

    def release(self) -> None:
        """The held batch's outputs are acked: its writes may be flushed."""
        for member in self.members:
            member.release()

    def hold_batch(self, result: object, events: Sequence[faust.EventT]) -> None:
        """`hold` as a `score_readings` observer (it must be the last one)."""
        self.hold()


_STAGES: weakref.WeakKeyDictionary[faust.types.AppT, WriteStage] = weakref.WeakKeyDictionary()


class _Frozen(Generic[T]):
    """A released value encoded (`raw`, what the flush writes) before a writer could change the
    live object (`value`, what reads return; None once `forget_decoded` dropped it)."""

    __slots__ = ("raw", "value")

    def __init__(self, raw: bytes, value: T | None) -> None:
        self.raw = raw
        self.value = value


class WriteBackTable(Generic[T]):
    """Decoded values of one Faust table, with writes held back until `flush`.

    `get` returns the newest unflushed value of a key if there is one (staged, held, released),
    else the table's, decoded (with `keep_decoded`, once: the value is kept with the bytes it
    came from, and a recovered or rebalanced partition holds other bytes, so the table stays
    the source of truth). `put` and `delete` record the newest value and the partition of the
    event the key belongs to; one event per partition is kept to write with (holding each
    key's own event would keep a whole input message per device alive until the flush).
    Values may be changed in place after a `put`: `flush` encodes what they hold then, except
    for a released value read again by a writer, which is encoded at that read.
    """

    def __init__(
        self,
        table: faust.types.TableT,
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        *,
        keep_decoded: bool = True,
    ) -> None:
        self.table = table
        self._encode = encode
        self._decode = decode
        self._keep_decoded = keep_decoded
        # key -> (value, partition); None deletes
        self._staged: dict[bytes, tuple[T | None, int]] = {}
        self._held: dict[bytes, tuple[T | None, int]] = {}
        self._released: dict[bytes, tuple[T | _Frozen[T] | None, int]] = {}
        self._anchors: dict[int, faust.EventT] = {}  # partition -> an event of it
        self._decoded: dict[bytes, tuple[bytes, T]] = {}
        self.stage = WriteStage.of(table.app)
        self.stage.join(self)

    def __len__(self) -> int:
        """Keys written and not flushed yet."""
        return len(self._staged.keys() | self._held.keys() | self._released.keys())

    def get(self, key: bytes, event: faust.EventT | None = None) -> T | None:
        """The value of `key`; `event=None` only for reads outside a stream (web views, which
        do not change values), where the RocksDB store looks the key up in every partition."""
        entry = self._staged.get(key) or self._held.get(key)
        if entry is not None:
            return entry[0]
        released = self._released.get(key)
        if released is not None:
            value, partition = released
            if isinstance(value, _Frozen):
                if value.value is None:
                    value.value = self._decode(value.raw)
                return value.value
            if value is not None and event is not None:  # a writer may change it in place
                self._released[key] = (_Frozen(self._encode(value), value), partition)
            return value
        if event is not None:
            in_partition_of(event)
        raw = self.table.get(key)
        return self._decoded_value(key, raw) if raw else None

    def put(self, key: bytes, value: T, event: faust.EventT) -> None:
        self._staged[key] = (value, self._anchor(event))

    def delete(self, key: bytes, event: faust.EventT) -> None:
        self._staged[key] = (None, self._anchor(event))

    def items(self) -> Iterator[tuple[bytes, T]]:
        """Every key of the local store and the unflushed writes, newest values first."""
        newest: dict[bytes, T | _Frozen[T] | None] = {k: v for k, (v, _) in self._released.items()}
        newest.update((k, v) for k, (v, _) in self._held.items())
        newest.update((k, v) for k, (v, _) in self._staged.items())
        for key, value in newest.items():
            if isinstance(value, _Frozen):
                yield key, value.value if value.value is not None else self._decode(value.raw)
            elif value is not None:
                yield key, value
        for raw_key, raw in list(self.table.items()):
            key = raw_key if isinstance(raw_key, bytes) else str(raw_key).encode()
            if raw and key not in newest:
                yield key, self._decoded_value(key, raw)

    def close_window(self) -> None:
        if not self._staged:
            return
        staged, self._staged = self._staged, {}
        for key, entry in staged.items():
            if key in self._held:
                self._held[key] = entry
            else:
                self._released[key] = entry

    def hold(self) -> None:
        if self._staged:
            self._held.update(self._staged)
            self._staged = {}

    def release(self) -> None:
        if self._held:
            self._released.update(self._held)
            self._held = {}

    def flush(self) -> int:
        """Write every released value, and staged ones outside a held batch, to the table
        (store and changelog); return how many."""
        writes: dict[bytes, tuple[T | _Frozen[T] | None, int]] = self._released
        self._released = {}
        staged, self._staged = self._staged, {}
        for key, entry in staged.items():
            if key in self._held:
                self._staged[key] = entry
            else:
                writes[key] = entry
        anchors = self._anchors
        needed = {p for _, p in self._held.values()} | {p for _, p in self._staged.values()}
        self._anchors = {p: e for p, e in anchors.items() if p in needed}
        try:
            for key, (value, partition) in writes.items():
                in_partition_of(anchors[partition])
                if value is None:
                    self.table.pop(key, None)
                    self._decoded.pop(key, None)
                elif isinstance(value, _Frozen):
                    self.table[key] = value.raw
                    self._decoded.pop(key, None)
                else:
                    raw = self._encode(value)
                    self.table[key] = raw
                    if self._keep_decoded:
                        self._decoded[key] = (raw, value)
        except BaseException:
            self._decoded.clear()
            raise
        self.stage.written += len(writes)
        return len(writes)

    def forget_decoded(self) -> None:
        """Drop the decoded values (after a failure may have changed one in place and not put
        it); unflushed writes stay, as a direct table write would have."""
        self._decoded.clear()
        for value, _ in self._released.values():
            if isinstance(value, _Frozen):
                value.value = None

    def _anchor(self, event: faust.EventT) -> int:
        partition = event.message.partition
        self._anchors[partition] = event
        return partition

    def _decoded_value(self, key: bytes, raw: bytes) -> T:
        cached = self._decoded.get(key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        value = self._decode(raw)
        if self._keep_decoded:
            self._decoded[key] = (raw, value)
        return value


class CommitFlusher(faust.Sensor):
    """Flushes the worker's write-back buffers when Faust starts an offset commit, which it
    also does before giving partitions up on a rebalance and when it stops."""

    def __init__(self, tables: Iterable[StagedBuffer], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = list(tables)
        self.flushes = 0
        self.written = 0

    def flush(self) -> int:
        written = sum(table.flush() for table in self.tables)
        self.flushes += 1
        self.written += written
        return written

    def on_commit_initiated(self, consumer: Any) -> Any:
        return self.flush()


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterFlush(faust.Sensor):
    """Fault injection for the kill-window tests; never set it in production. The worker
    SIGKILLs itself at its Nth commit flush that wrote anything:

    - `EDGEML_FAULT_KILL_AFTER_FLUSH=N`: at the offset commit that follows, after Faust flushed
      the producer (state and site partials acked by the broker) and before the offsets are
      committed: the widest gap between stored state and committed offsets. Faust has no hook
      between its producer flush and `Consumer._commit`, so the consumer's `_commit` is
      wrapped (an instance attribute, first commit only).
    - `EDGEML_FAULT_KILL_BEFORE_SENDS=N` (`flusher` given): right after the flush wrote the
      state locally, before the event loop hands any of its messages (changelogs, site
      partials) to the client: the kill *during* a flush's sends at its worst. Sensors run in
      no set order, so this one flushes first itself (a second flush writes nothing).
    """

    def __init__(
        self,
        stage: WriteStage,
        after: int,
        kill: Callable[[], None] = _sigkill,
        *,
        flusher: CommitFlusher | None = None,
        **kwargs: Any,
    ) -> None:
        if after < 1:
            raise ValueError(f"after must be >= 1 (a commit flush count), got {after}")
        super().__init__(**kwargs)
        self.stage = stage
        self.after = after
        self.flusher = flusher
        self.flushes = 0  # commit flushes that wrote something, seen at offset commits
        self._seen = 0
        self._kill = kill
        self._wrapped: weakref.ReferenceType[Any] | None = None

    def on_commit_initiated(self, consumer: Any) -> Any:
        if self.flusher is not None:
            self.flusher.flush()
            self._count_and_kill("before its sends")
            return None
        if self._wrapped is not None and self._wrapped() is consumer:
            return None
        original = consumer._commit

        async def commit(offsets: Any) -> Any:
            self._count_and_kill("before its offset commit")
            return await original(offsets)

        consumer._commit = commit
        self._wrapped = weakref.ref(consumer)
        return None

    def _count_and_kill(self, where: str) -> None:
        if self.stage.written > self._seen:
            self._seen = self.stage.written
            self.flushes += 1
        if self.flushes >= self.after:
            log.warning("fault injection: SIGKILL after commit flush %d, %s", self.flushes, where)
            self._kill()
