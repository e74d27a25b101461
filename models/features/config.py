"""Which windows a device's features use (`WindowSpec`, `FeatureConfig`) and how a metric's
feature vector is named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PER_WINDOW", "FeatureConfig", "WindowSpec"]

PER_WINDOW = ("mean", "std", "min", "max", "slope", "roc", "ewma", "z")
_K = len(PER_WINDOW)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One window: `size` seconds of event time (`kind="time"`) or the last `size` readings."""

    size: float
    kind: Literal["time", "count"] = "time"

    def __post_init__(self) -> None:
        if self.kind not in ("time", "count"):
            raise ValueError(f"window kind must be 'time' or 'count', got {self.kind!r}")
        if self.size <= 0 or (self.kind == "count" and (self.size < 2 or self.size % 1)):
            raise ValueError(f"bad window size {self.size!r} for kind {self.kind!r}")

    @property
    def name(self) -> str:
        return f"{self.size:g}s" if self.kind == "time" else f"{int(self.size)}n"

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """`"10s"` → 10 s of event time; `"20n"` → the last 20 readings."""
        text = text.strip()
        if text.endswith("s"):
            return cls(float(text[:-1]), "time")
        if text.endswith("n"):
            return cls(float(int(text[:-1])), "count")
        raise ValueError(f"window {text!r}: use '<seconds>s' or '<count>n', e.g. '10s', '20n'")


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Which windows, how much out-of-order grace, when a silent device counts as idle."""

    windows: tuple[WindowSpec, ...] = (WindowSpec(10.0), WindowSpec(60.0))
    grace_s: float = 5.0
    idle_timeout_s: float = 600.0
    max_metrics: int = 32  # per device; more are not tracked (keeps the state <= ~45 KB)
    # a reading more than grace_s + jump_gaps * (typical gap) ahead is held until confirmed;
    # 2 gaps: a slow sensor's jitter stays under it, and an unconfirmed jump can make at most
    # the one next reading late (by then event time has moved past it)
    jump_gaps: float = 2.0
    # idle = silent for max(idle_timeout_s, idle_gaps x typical gap): 600 s alone made every
    # reading of a 15-min or hourly sensor an idle restart (windows reset, incident closed and
    # reopened at each reading: the corpus's low-FP score fell from 68 to 25)
    idle_gaps: float = 20.0

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("at least one window is required")
        if self.grace_s < 0 or self.idle_timeout_s <= 0 or self.max_metrics < 1:
            raise ValueError("grace_s must be >= 0, idle_timeout_s > 0 and max_metrics >= 1")
        if not self.jump_gaps >= 0 or not self.idle_gaps >= 0:
            raise ValueError(f"jump_gaps and idle_gaps must be >= 0, got {self.jump_gaps!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """Names of one metric's feature vector: `value`, then `<feature>_<window>`."""
        out = ["value"]
        for w in self.windows:
            out.extend(f"{f}_{w.name}" for f in PER_WINDOW)
        return tuple(out)

    def index(self, feature: str, window: int = 0) -> int:
        """Position of `feature` of window number `window` in a metric's vector."""
        return 1 + window * _K + PER_WINDOW.index(feature)
