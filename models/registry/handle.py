"""The hot-swap reference a worker serves through (`ModelHandle`)."""

from __future__ import annotations

import threading

import numpy as np

from edgeml.models.manifest import SchemaMismatch
from edgeml.models.registry.backends import LoadedModel

__all__ = ["ModelHandle"]


class ModelHandle:
    """A swappable reference to the model a worker is serving, for hot swaps.

    `predict` reads the current model once, so a call that started before `swap` finishes on
    the old model while new calls use the new one; no lock on the hot path. Created by
    `ModelRegistry.handle(model_id)`; updated by `ModelRegistry.apply(announcement, handle)` or
    `ModelRegistry.reload_if_changed(handle)`.
    """

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.generation = 0

    @property
    def current(self) -> LoadedModel:
        return self._model

    @property
    def ref(self) -> str:
        return self._model.manifest.ref

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self._model.predict(features)

    def swap(self, new: LoadedModel) -> LoadedModel:
        """Make `new` current and return the old model; refuses another id or other inputs."""
        with self._lock:
            old = self._model
            if new.manifest.model_id != old.manifest.model_id:
                raise SchemaMismatch(
                    f"cannot swap {old.manifest.ref} for a different model {new.manifest.ref}"
                )
            if new.manifest.inputs != old.manifest.inputs:
                raise SchemaMismatch(
                    f"cannot swap {old.manifest.ref} for {new.manifest.ref}: inputs differ "
                    f"({list(old.manifest.inputs)} vs {list(new.manifest.inputs)})"
                )
            self._model = new
            self.generation += 1
            return old
