"""What a task is configured with (`TaskConfig`) and what an `infer` returns (`InferenceResult`
with one `BackendCall` per backend called): the record a prediction carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeml.models.inference.aggregate import Aggregation
from edgeml.models.inference.backends import SCORE
from edgeml.models.inference.health import BreakerConfig
from edgeml.models.inference.strategies import LowestLatency, Strategy

__all__ = ["BackendCall", "InferenceResult", "TaskConfig"]


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """How one task is served. `timeout_s` bounds each backend call, `deadline_s` the whole
    call with its failovers; `aggregation` set = fan out to `fanout` backends (0 = every
    healthy one) and combine; `probe_interval_s` 0 = probe at start only."""

    strategy: Strategy = field(default_factory=LowestLatency)
    timeout_s: float = 1.0
    deadline_s: float = 3.0
    aggregation: Aggregation | None = None
    fanout: int = 0
    output: str = SCORE
    probe_interval_s: float = 10.0
    probe_timeout_s: float = 2.0
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.deadline_s <= 0 or self.probe_timeout_s <= 0:
            raise ValueError("timeout_s, deadline_s and probe_timeout_s must be > 0")
        if self.fanout < 0 or self.probe_interval_s < 0:
            raise ValueError("fanout and probe_interval_s must be >= 0")


@dataclass(frozen=True, slots=True)
class BackendCall:
    """One backend call of an `infer`: who, which model, how long, and what went wrong."""

    backend: str
    model_ref: str
    seconds: float
    ok: bool
    error: str | None = None
    timed_out: bool = False

    @property
    def outcome(self) -> str:
        """`ok`, `timeout` or `error` (a metric label)."""
        return "ok" if self.ok else "timeout" if self.timed_out else "error"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model_ref,
            "ms": round(self.seconds * 1e3, 3),
            "ok": self.ok,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class InferenceResult:
    """The answer of one `infer`: the task's output (`value`, None when nobody answered, with
    `reason`), the answering backend's outputs, and the record of every call made.
    `members`: each answering backend's scores (the `stack` aggregation only, else empty)."""

    task: str
    value: np.ndarray | None
    reason: str | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    calls: list[BackendCall] = field(default_factory=list)
    seconds: float = 0.0
    members: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def answered(self) -> list[BackendCall]:
        return [c for c in self.calls if c.ok]

    @property
    def model_ref(self) -> str | None:
        """The model ref that answered ("a+b" for an aggregate), None when nobody did."""
        refs = sorted({c.model_ref for c in self.answered})
        return "+".join(refs) if refs else None

    @property
    def failovers(self) -> int:
        """Failed calls before the answer (or all of them when nobody answered)."""
        return sum(1 for c in self.calls if not c.ok)

    def models(self) -> list[dict[str, Any]]:
        """The record a prediction carries (its `models` field)."""
        return [c.to_dict() for c in self.calls]
