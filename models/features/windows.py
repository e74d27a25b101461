"""One device's window state (`DeviceFeatures`: a `MetricWindows` per metric) and its flat
serialization (a header of ints and a list of floats, as `DeviceState` stores it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgeml.models.aggregators import Moments

__all__ = ["DeviceFeatures", "MetricWindows"]

_MOMENTS = Moments()


class MetricWindows:
    """One metric's sorted event-time buffer and, per window, running moments and an EWMA.

    `ts`/`vs` hold the points any window still needs, sorted by event time; window `k` covers
    `ts[start[k]:]`. Created by `FeatureExtractor`; not usually used directly.
    """

    __slots__ = ("ewma", "last_ts", "moments", "start", "ts", "updates", "vs")

    def __init__(self, n_windows: int) -> None:
        self.ts: list[float] = []
        self.vs: list[float] = []
        self.start: list[int] = [0] * n_windows
        self.moments: list[list[float]] = [_MOMENTS.initialize() for _ in range(n_windows)]
        self.ewma: list[list[float]] = [[0.0, -math.inf, 0.0] for _ in range(n_windows)]
        self.last_ts = -math.inf
        self.updates = 0

    # --- serialization: a header of ints and a flat list of floats --------------------------
    def dump(self, floats: list[float]) -> list[int]:
        floats.extend(self.ts)
        floats.extend(self.vs)
        for m in self.moments:
            floats.extend(m)
        for e in self.ewma:
            floats.extend(e)
        floats.append(self.last_ts)
        return [len(self.ts), self.updates, *self.start]

    @classmethod
    def load(cls, header: list[int], floats: list[float], pos: int) -> tuple[MetricWindows, int]:
        n, updates, *start = header
        mw = cls(len(start))
        mw.ts = floats[pos : pos + n]
        pos += n
        mw.vs = floats[pos : pos + n]
        pos += n
        for m in mw.moments:
            m[:] = floats[pos : pos + 8]
            pos += 8
        for e in mw.ewma:
            e[:] = floats[pos : pos + 3]
            pos += 3
        mw.last_ts = floats[pos]
        mw.updates = updates
        mw.start = list(start)
        return mw, pos + 1


@dataclass(slots=True)
class DeviceFeatures:
    """One device's feature state: its watermark and one `MetricWindows` per metric.

    `gap`: typical spacing of its readings (0 = not known yet); `ahead`: the event time of a
    held jump (-inf: none), `ahead_reset`: whether that jump reset the windows."""

    watermark: float = -math.inf
    metrics: dict[str, MetricWindows] = field(default_factory=dict)
    readings: int = 0
    gap: float = 0.0
    ahead: float = -math.inf
    ahead_reset: bool = False

    def is_idle(self, now_event_ts: float, idle_timeout_s: float) -> bool:
        return self.readings > 0 and now_event_ts - self.watermark > idle_timeout_s

    def reset(self) -> None:
        """Forget every window (the device went idle); the watermark stays."""
        self.metrics.clear()

    def dump(self) -> tuple[dict[str, Any], list[float]]:
        floats: list[float] = [self.watermark]
        headers = {name: mw.dump(floats) for name, mw in self.metrics.items()}
        ahead = self.ahead if self.ahead > -math.inf else None  # JSON has no -inf
        return {"r": self.readings, "m": headers, "j": [self.gap, ahead, self.ahead_reset]}, floats

    @classmethod
    def load(cls, header: dict[str, Any], floats: list[float], pos: int) -> tuple[Any, int]:
        state = cls(watermark=floats[pos], readings=int(header["r"]))
        if "j" in header:  # absent in states written before jumps were held
            gap, ahead, reset = header["j"]
            state.gap = float(gap)
            state.ahead = -math.inf if ahead is None else float(ahead)
            state.ahead_reset = bool(reset)
        pos += 1
        for name, mh in header["m"].items():
            state.metrics[name], pos = MetricWindows.load(mh, floats, pos)
        return state, pos
