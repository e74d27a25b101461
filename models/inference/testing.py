"""A scripted backend for tests, benches and fault drills (`ScriptedBackend`).

Its `mode` says what the next calls do and can be changed while it serves: `"ok"` answers
`score` = `value` for every row after `delay_s`, `"raise"` raises `BackendError`, `"hang"`
never answers (until cancelled), `"nan"` answers NaN, `"short"` answers one row too few.

>>> import asyncio
>>> b = ScriptedBackend("a", value=0.25)
>>> asyncio.run(b.infer({"input": np.zeros((2, 3), np.float32)}))["score"].tolist()
[0.25, 0.25]
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgeml.models.inference.backends import SCORE, Signature, Tensors, TensorSpec
from edgeml.models.inference.errors import BackendError

__all__ = ["Mode", "ScriptedBackend", "any_rows"]

Mode = Literal["ok", "raise", "hang", "nan", "short"]


def any_rows(name: str = "input", width: int = -1, datatype: str = "FP32") -> Signature:
    """A signature taking one (n, width) tensor (-1: any width) and answering `score`."""
    return Signature(
        (TensorSpec(name, datatype, (-1, width)),), (TensorSpec(SCORE, "FP64", (-1,)),)
    )


@dataclass(eq=False)
class ScriptedBackend:
    """A backend whose behaviour is its `mode` (module docstring); counts its calls."""

    name: str
    value: float = 0.5
    mode: Mode = "ok"
    delay_s: float = 0.0
    model_ref: str = ""
    signature: Signature = field(default_factory=any_rows)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    calls: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        if not self.model_ref:
            self.model_ref = f"{self.name}@1"

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        self.calls += 1
        rows = len(next(iter(inputs.values())))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "raise":
            raise BackendError(f"{self.name} is scripted to fail")
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "nan":
            return {SCORE: np.full(rows, np.nan)}
        if self.mode == "short":
            return {SCORE: np.full(max(rows - 1, 0), self.value)}
        return {SCORE: np.full(rows, self.value)}

    async def close(self) -> None:
        self.closed = True
