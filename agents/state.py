"""The device-state table seen through `models.pipeline.StateStore`."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from models.scoring import DeviceState

__all__ = ["StateCache", "TableStateStore"]


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

    Faust reads and writes a table key in the RocksDB bucket and changelog partition of the
    stream's *current event*. After `take_events` that is the batch's last event, which may
    belong to another partition than the device; so each load and save first makes the
    device's own message the current event, keeping state co-partitioned with the device's
    readings (and findable) across batches and rebalances.
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
        self._stream._set_current_event(self._events[origin])
        raw = self._table.get(device_id.encode())
        if not raw:
            return None
        cached = self._cache.get(device_id)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        return DeviceState.from_bytes(raw)

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        raw = state.to_bytes()
        self._stream._set_current_event(self._events[origin])
        self._table[device_id.encode()] = raw
        self._cache[device_id] = (raw, state)
