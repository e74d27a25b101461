"""The peers' job, shared by the quix-streams and bytewax pipelines (issue #12, item 5).

Per device and per metric: the mean and standard deviation of the last 60 s of *event time*
(`ts`), and an exponentially weighted z-score, (x - EW mean) / EW std, updated after scoring.
One output per reading: `{"device_id", "seq", "ts", "sent_at", "mean", "std", "z"}`; a
`{"readings": [...]}` envelope gets one `{"predictions": [...]}` message. No validation, late
handling, alerts, ONNX or analytics: less than the edgeml worker does, as the issue says.

State is plain numbers and lists, so quix-streams can keep it in its (JSON-serialised) state
store: river's EW statistics are Rust-backed objects that cannot be rebuilt from numbers, so
`DeviceStats` applies river's `EWMean`/`EWVar` recurrences itself (`ew_matches_river` checks
them against river.stats at start-up); bytewax keeps river.stats objects directly
(`RiverDeviceStats`). Imports nothing from edgeml: it runs in the peers' own venv.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

__all__ = ["ALPHA", "WINDOW_S", "DeviceStats", "RiverDeviceStats", "ew_matches_river", "score"]

WINDOW_S = 60.0
ALPHA = 0.1  # river's fading_factor


class DeviceStats:
    """One device's windows and EW statistics as JSON-able state: `{metric: [window, n, sum,
    sumsq, ew_mean, ew_var, seen]}` with the window a list of `[ts, value]`."""

    def __init__(self, state: dict[str, list[Any]] | None = None) -> None:
        self.state: dict[str, list[Any]] = state if state is not None else {}

    def update(self, reading: dict[str, Any]) -> dict[str, Any]:
        ts = float(reading["ts"])
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        zs: dict[str, float] = {}
        for name, value in reading["metrics"].items():
            x = float(value)
            m = self.state.get(name)
            if m is None:
                m = self.state[name] = [[], 0, 0.0, 0.0, 0.0, 0.0, False]
            window = m[0]
            window.append([ts, x])
            m[1] += 1
            m[2] += x
            m[3] += x * x
            while window and window[0][0] <= ts - WINDOW_S:
                _, old = window.pop(0)
                m[1] -= 1
                m[2] -= old
                m[3] -= old * old
            n = m[1]
            mean = m[2] / n
            means[name] = mean
            stds[name] = math.sqrt(max(m[3] / n - mean * mean, 0.0))
            ew_mean, ew_var = m[4], m[5]
            zs[name] = (x - ew_mean) / math.sqrt(ew_var) if m[6] and ew_var > 0 else 0.0
            if m[6]:  # river EWMean / EWVar: mean += a (x - mean); var on the squares
                m[4] = ew_mean + ALPHA * (x - ew_mean)
                m[5] = (1 - ALPHA) * (ew_var + ALPHA * (x - ew_mean) ** 2)
            else:
                m[4], m[5], m[6] = x, 0.0, True
        return _output(reading, means, stds, zs)


class RiverDeviceStats:
    """The same job with river.stats objects (bytewax keeps Python objects as state)."""

    def __init__(self) -> None:
        from river import stats

        self._stats = stats
        self.windows: dict[str, deque[tuple[float, float]]] = {}
        self.sums: dict[str, list[float]] = {}
        self.ew: dict[str, tuple[Any, Any]] = {}

    def update(self, reading: dict[str, Any]) -> dict[str, Any]:
        ts = float(reading["ts"])
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        zs: dict[str, float] = {}
        for name, value in reading["metrics"].items():
            x = float(value)
            window = self.windows.get(name)
            if window is None:
                window = self.windows[name] = deque()
                self.sums[name] = [0.0, 0.0, 0.0]
                self.ew[name] = (
                    self._stats.EWMean(fading_factor=ALPHA),
                    self._stats.EWVar(fading_factor=ALPHA),
                )
            s = self.sums[name]
            window.append((ts, x))
            s[0] += 1
            s[1] += x
            s[2] += x * x
            while window and window[0][0] <= ts - WINDOW_S:
                _, old = window.popleft()
                s[0] -= 1
                s[1] -= old
                s[2] -= old * old
            mean = s[1] / s[0]
            means[name] = mean
            stds[name] = math.sqrt(max(s[2] / s[0] - mean * mean, 0.0))
            ew_mean, ew_var = self.ew[name]
            var = ew_var.get()
            zs[name] = (x - ew_mean.get()) / math.sqrt(var) if var > 0 else 0.0
            ew_mean.update(x)
            ew_var.update(x)
        return _output(reading, means, stds, zs)


def _output(
    reading: dict[str, Any], means: dict[str, float], stds: dict[str, float], zs: dict[str, float]
) -> dict[str, Any]:
    return {
        "device_id": reading["device_id"],
        "seq": reading["seq"],
        "ts": reading["ts"],
        "sent_at": reading.get("sent_at"),
        "mean": means,
        "std": stds,
        "z": zs,
    }


def score(stats: DeviceStats | RiverDeviceStats, message: dict[str, Any]) -> dict[str, Any]:
    """One input message (a reading or an envelope) through a device's stats: its output."""
    items = message.get("readings")
    if isinstance(items, list):
        return {"predictions": [stats.update(r) for r in items]}
    return stats.update(message)


def ew_matches_river(samples: int = 200) -> bool:
    """`DeviceStats`' EW recurrences give river.stats' EWMean/EWVar (to 1e-9)."""
    from river import stats

    mean, var = stats.EWMean(fading_factor=ALPHA), stats.EWVar(fading_factor=ALPHA)
    ours = DeviceStats()
    for i in range(samples):
        x = math.sin(i * 0.37) * 10 + (i % 7)
        ours.update({"device_id": "d", "seq": i, "ts": float(i), "metrics": {"m": x}})
        mean.update(x)
        var.update(x)
    m = ours.state["m"]
    return abs(m[4] - mean.get()) < 1e-9 and abs(m[5] - var.get()) < 1e-9
