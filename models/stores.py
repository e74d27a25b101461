"""An in-memory `StateStore` for `ReadingPipeline`: tests, benchmarks and one-process runs.

It keeps each device's state as bytes, as the worker's table does, so every `load` decodes
and a codec defect shows up here as it would after a restart.

>>> from edgeml.models.scoring import Scorer
>>> store = BytesStateStore()
>>> store.save("dev-1", Scorer().new_state("dev-1"), 0)
>>> store.load("dev-1", 0).device_id, store.load("dev-2", 0)
('dev-1', None)
"""

from __future__ import annotations

from edgeml.models.state import DeviceState

__all__ = ["BytesStateStore"]


class BytesStateStore:
    """Device id -> encoded `DeviceState`; `origin` (the batch message index) is not needed."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        raw = self.data.get(device_id)
        return DeviceState.from_bytes(raw) if raw else None

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        self.data[device_id] = state.to_bytes()
