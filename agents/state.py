"""The device-state table seen through `models.pipeline.StateStore`."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from models.scoring import DeviceState

__all__ = ["TableStateStore"]


class TableStateStore:
    """Loads and saves `DeviceState` in a Faust table during one `take_events` batch.

    Faust writes a table key's changelog (and RocksDB bucket) to the partition of the stream's
    *current event*. After `take_events` that is the batch's last event, which may belong to
    another partition than the device; so each save first makes the device's own message the
    current event, keeping state co-partitioned with the device's readings across rebalances.
    """

    def __init__(
        self, table: faust.types.TableT, stream: faust.Stream, events: Sequence[faust.EventT]
    ) -> None:
        self._table = table
        self._stream = stream
        self._events = events

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        raw = self._table.get(device_id)
        return DeviceState.from_bytes(raw) if raw else None

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        self._stream._set_current_event(self._events[origin])
        self._table[device_id] = state.to_bytes()
