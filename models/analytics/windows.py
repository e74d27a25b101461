"""The window layout (`AnalyticsWindows`): tumbling and hopping windows as unions of panes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeml.models.analytics.stats import WINDOW_KINDS, WindowStats

__all__ = ["AnalyticsWindows"]


@dataclass(frozen=True, slots=True)
class AnalyticsWindows:
    """The window layout: tumbling size, hopping size and hop, and how long panes are kept.

    Usually built from `Settings` (`analytics_*`). All in whole seconds of event time; the pane
    is their greatest common divisor, so every window is a union of whole panes.
    """

    tumbling_s: int = 60
    hopping_s: int = 300
    hop_s: int = 60
    retention_s: int = 3600
    pane_s: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tumbling_s", "hopping_s", "hop_s", "retention_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.hop_s > self.hopping_s:
            raise ValueError(f"hop_s ({self.hop_s}) must be <= hopping_s ({self.hopping_s})")
        if self.retention_s < max(self.tumbling_s, self.hopping_s):
            raise ValueError(
                f"retention_s ({self.retention_s}) must hold the largest window "
                f"({max(self.tumbling_s, self.hopping_s)} s)"
            )
        object.__setattr__(self, "pane_s", math.gcd(self.tumbling_s, self.hopping_s, self.hop_s))

    def size_and_hop(self, kind: str) -> tuple[int, int]:
        """(size, hop) of a window kind; a bad kind is a ValueError listing the choices."""
        if kind == "tumbling":
            return self.tumbling_s, self.tumbling_s
        if kind == "hopping":
            return self.hopping_s, self.hop_s
        raise ValueError(f"window must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")

    def pane_of(self, ts: float) -> int:
        """Start (epoch seconds) of the pane that holds event time `ts`."""
        p = self.pane_s
        return int(ts // p) * p

    def expired(self, pane: int, watermark: float) -> bool:
        """True when the pane ended `retention_s` or more before `watermark`."""
        return pane + self.pane_s <= watermark - self.retention_s

    def windows(
        self, kind: str, panes: Mapping[int, WindowStats], watermark: float
    ) -> list[tuple[int, int, WindowStats]]:
        """(start, end, stats) of each `kind` window that has data, oldest first.

        Windows reaching back before the retention horizon (some of their panes already
        deleted) are left out, so every window listed is complete.
        """
        size, hop = self.size_and_hop(kind)
        if not panes:
            return []
        starts: set[int] = set()
        for pane in panes:
            first = ((pane - size) // hop + 1) * hop  # earliest window start covering `pane`
            starts.update(range(first, pane + 1, hop))
        horizon = watermark - self.retention_s
        out: list[tuple[int, int, WindowStats]] = []
        for start in sorted(starts):
            if start + self.pane_s <= horizon:
                continue
            stats = WindowStats()
            for pane in range(start, start + size, self.pane_s):
                if pane in panes:
                    stats.merge(panes[pane])
            out.append((start, start + size, stats))
        return out
