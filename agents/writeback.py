"""Table writes held back until Faust commits offsets, and the partition context they need.

Every write to a Faust table is also a changelog message through Faust's ProducerBuffer. At
single-reading messages from many devices that was one state write and two analytics writes
per reading, about 265 µs of a reading's 458 µs (docs/benchmarks.md). A `WriteBackTable`
keeps the newest value of each key in memory and writes it when Faust starts an offset
commit (`CommitFlusher`, a Faust sensor): a device sending N readings between two commits
costs one write instead of N.

What a crash recovers does not get worse. Faust's commit runs `on_commit_initiated` (our
flush), picks the acked offsets, waits for the producer (our changelog messages included),
then commits. So a committed offset is never ahead of the state written for it; the state
may be ahead by the `take_events` batch in flight (processed, not yet acked), as it was when
every write went out at once. Readings after the last commit are re-read after a crash and
rebuild what was held back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import faust
from faust.streams import _current_event

__all__ = ["CommitFlusher", "WriteBackTable", "in_partition_of"]

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


class WriteBackTable(Generic[T]):
    """Decoded values of one Faust table, with writes held back until `flush`.

    `get` returns the pending value of a key if there is one, else the table's, decoded
    (with `keep_decoded`, once: the value is kept with the bytes it came from, and a recovered
    or rebalanced partition holds other bytes, so the table stays the source of truth). `put`
    and `delete` record the newest value and the partition of the event the key belongs to;
    one event per partition is kept to write with (holding each key's own event would keep a
    whole input message per device alive until the flush). Values may be changed in place
    after a `put`: `flush` encodes what they hold then.
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
        self._pending: dict[bytes, tuple[T | None, int]] = {}  # key -> (value, partition)
        self._anchors: dict[int, faust.EventT] = {}  # partition -> an event of it
        self._decoded: dict[bytes, tuple[bytes, T]] = {}

    def __len__(self) -> int:
        """Keys waiting for the next flush."""
        return len(self._pending)

    def get(self, key: bytes, event: faust.EventT | None = None) -> T | None:
        """The value of `key`; `event=None` only for reads outside a stream (web views), where
        the RocksDB store looks the key up in every partition."""
        pending = self._pending.get(key)
        if pending is not None:
            return pending[0]
        if event is not None:
            in_partition_of(event)
        raw = self.table.get(key)
        return self._decoded_value(key, raw) if raw else None

    def put(self, key: bytes, value: T, event: faust.EventT) -> None:
        self._pending[key] = (value, self._anchor(event))

    def delete(self, key: bytes, event: faust.EventT) -> None:
        self._pending[key] = (None, self._anchor(event))

    def items(self) -> Iterator[tuple[bytes, T]]:
        """Every key of the local store and the pending writes, pending values first."""
        pending = dict(self._pending)
        for key, (value, _) in pending.items():
            if value is not None:
                yield key, value
        for raw_key, raw in list(self.table.items()):
            key = raw_key if isinstance(raw_key, bytes) else str(raw_key).encode()
            if raw and key not in pending:
                yield key, self._decoded_value(key, raw)

    def flush(self) -> int:
        """Write every pending value to the table (store and changelog); return how many."""
        pending, self._pending = self._pending, {}
        anchors, self._anchors = self._anchors, {}
        try:
            for key, (value, partition) in pending.items():
                in_partition_of(anchors[partition])
                if value is None:
                    self.table.pop(key, None)
                    self._decoded.pop(key, None)
                else:
                    raw = self._encode(value)
                    self.table[key] = raw
                    if self._keep_decoded:
                        self._decoded[key] = (raw, value)
        except BaseException:
            self._decoded.clear()
            raise
        return len(pending)

    def forget_decoded(self) -> None:
        """Drop the decoded values (after a failure may have changed one in place and not put
        it); pending writes stay, as a direct table write would have."""
        self._decoded.clear()

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
    """Flushes the worker's `WriteBackTable`s when Faust starts an offset commit, which it
    also does before giving partitions up on a rebalance and when it stops."""

    def __init__(self, tables: Iterable[WriteBackTable[Any]], **kwargs: Any) -> None:
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
