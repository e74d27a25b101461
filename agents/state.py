"""The device-state table seen through `models.pipeline.StateStore`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import faust

from models.scoring import DeviceState

__all__ = ["StateCache", "TableStateStore", "cached_decode", "in_partition_of"]

T = TypeVar("T")


def in_partition_of(stream: faust.Stream, event: faust.EventT) -> None:
    """Make `event` the stream's current event before touching a table key of its partition.

    Faust reads and writes a table key in the RocksDB bucket and changelog partition of the
    stream's *current event*. After `take_events` that is the batch's last event, which may
    belong to another partition than the key; Faust has no public call for this.
    """
    stream._set_current_event(event)


def cached_decode(
    cache: dict[str, tuple[bytes, T]], key: str, raw: bytes, decode: Callable[[bytes], T]
) -> T:
    """The cached object for `key` while the table still holds exactly the bytes this worker
    wrote for it (a recovered or rebalanced partition holds other bytes); else decode `raw`."""
    cached = cache.get(key)
    if cached is not None and (cached[0] is raw or cached[0] == raw):
        return cached[1]
    return decode(raw)


class StateCache:
    """Live `DeviceState` objects by device, each with the bytes last written for it.

    Decoding a state costs about as much as scoring a reading; the cache skips it whenever the
    table still holds exactly the bytes this worker wrote (a recovered or rebalanced partition
    holds other bytes, so the table stays the source of truth).
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, DeviceState]] = {}


class TableStateStore:
    """Loads and saves `DeviceState` in a Faust table during one `take_events` batch.

    Each load and save first makes the device's own message the current event
    (`in_partition_of`), keeping state co-partitioned with the device's readings (and
    findable) across batches and rebalances.
    """

    def __init__(
        self,
        table: faust.types.TableT,
        stream: faust.Stream,
        events: Sequence[faust.EventT],
        cache: StateCache,
    ) -> None:
        self._table = table
        self._stream = stream
        self._events = events
        self._cache = cache.entries

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        in_partition_of(self._stream, self._events[origin])
        raw = self._table.get(device_id.encode())
        if not raw:
            return None
        return cached_decode(self._cache, device_id, raw, DeviceState.from_bytes)

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        raw = state.to_bytes()
        in_partition_of(self._stream, self._events[origin])
        self._table[device_id.encode()] = raw
        self._cache[device_id] = (raw, state)
