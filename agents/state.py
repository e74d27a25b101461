"""The device-state table seen through `models.pipeline.StateStore`."""

from __future__ import annotations

from collections.abc import Sequence

import faust

from edgeml.agents.writeback import WriteBackTable
from edgeml.models.scoring import DeviceState

__all__ = ["TableStateStore", "device_states"]


def device_states(table: faust.types.TableT) -> WriteBackTable[DeviceState]:
    """The worker's one write-back view of the device-state table (scoring and maintenance
    share it, so both see a device's newest state)."""
    return WriteBackTable(table, DeviceState.to_bytes, DeviceState.from_bytes)


class TableStateStore:
    """Loads and saves `DeviceState` for one batch of events.

    A device's state is read and written in the partition of its own message (`origin`), so
    it stays co-partitioned with the device's readings (and findable) across batches and
    rebalances. Saves are held back until the next offset commit (`agents.writeback`).

    Making one begins a batch on the app's `WriteStage` (earlier writes are done); the scoring
    agent calls `release()` once the batch's outputs are acked, so its saves (and the analytics
    writes made with them) are flushed only then. A writer that never holds its batch
    (`learn_maintenance`) needs no release: its saves are flushed by the next commit.
    """

    def __init__(self, states: WriteBackTable[DeviceState], events: Sequence[faust.EventT]) -> None:
        self._states = states
        self._events = events
        states.stage.begin()

    def release(self) -> None:
        """The batch's outputs were delivered: its held writes may be flushed."""
        self._states.stage.release()

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        return self._states.get(device_id.encode(), self._events[origin])

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        self._states.put(device_id.encode(), state, self._events[origin])
