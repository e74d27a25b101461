"""Window aggregators: small plain objects with `initialize` / `agg` / `result` (quix style).

Each aggregator folds `(ts, value)` pairs into a state and reads a number out of it. The
subtractable ones (`Moments` and its views `Count`, `Mean`, `Std`, `Slope`) also `retract`, so
a sliding window costs O(1) per reading; `Min`, `Max` and `RateOfChange` read the window's
sorted buffer; `Ewma` is a time-decayed exponential average. `models.features` builds its
per-metric windows from these; tests drive each one through a parametrize table.

States are plain lists of floats so a window serializes as numbers (no pickle).

    >>> m = Mean(); s = m.initialize()
    >>> for t, x in [(0.0, 1.0), (1.0, 3.0)]:
    ...     s = m.agg(s, t, x)
    >>> m.result(s)
    2.0
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = [
    "Aggregator",
    "Count",
    "Ewma",
    "Max",
    "Mean",
    "Min",
    "Moments",
    "RateOfChange",
    "Slope",
    "Std",
    "Subtractable",
]

# Moments state layout: [n, sum_x, sum_xx, sum_t, sum_tt, sum_tx, t_anchor, x_anchor].
# t and x are accumulated relative to the anchors so epoch timestamps (~1.7e9) and large
# offsets do not cancel catastrophically in the variance and slope formulas.
_N, _SX, _SXX, _ST, _STT, _STX, _T0, _X0 = range(8)


class Aggregator(Protocol):
    """Folds `(ts, value)` pairs into a list-of-floats state and reads one number out of it."""

    def initialize(self) -> list[float]: ...

    def agg(self, state: list[float], ts: float, value: float) -> list[float]: ...

    def result(self, state: list[float]) -> float: ...


class Subtractable(Aggregator, Protocol):
    """An aggregator that can also forget a pair it folded in (sliding windows in O(1))."""

    def retract(self, state: list[float], ts: float, value: float) -> list[float]: ...


class Moments:
    """Running sums of x, x², t, t², t·x relative to anchors: the base of Mean/Std/Slope.

    `agg` and `retract` mutate the state in place (and return it). `rebase` re-anchors and
    recomputes the sums exactly from the window's points, which bounds float drift.
    """

    def initialize(self, t_anchor: float = 0.0, x_anchor: float = 0.0) -> list[float]:
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, t_anchor, x_anchor]

    def agg(self, state: list[float], ts: float, value: float) -> list[float]:
        if state[_N] == 0.0:
            state[_T0] = ts
            state[_X0] = value
        t = ts - state[_T0]
        x = value - state[_X0]
        state[_N] += 1.0
        state[_SX] += x
        state[_SXX] += x * x
        state[_ST] += t
        state[_STT] += t * t
        state[_STX] += t * x
        return state

    def retract(self, state: list[float], ts: float, value: float) -> list[float]:
        if state[_N] <= 1.0:
            state[_N] = state[_SX] = state[_SXX] = 0.0
            state[_ST] = state[_STT] = state[_STX] = 0.0
            return state
        t = ts - state[_T0]
        x = value - state[_X0]
        state[_N] -= 1.0
        state[_SX] -= x
        state[_SXX] -= x * x
        state[_ST] -= t
        state[_STT] -= t * t
        state[_STX] -= t * x
        return state

    def rebase(self, state: list[float], ts: list[float], vs: list[float]) -> list[float]:
        """Recompute the sums exactly from the window's points, anchored at its first point."""
        state[:] = self.initialize(ts[0] if ts else 0.0, vs[0] if vs else 0.0)
        for t, x in zip(ts, vs, strict=True):
            self.agg(state, t, x)
        return state

    def result(self, state: list[float]) -> float:
        return state[_N]


class Count(Moments):
    """Number of points in the window."""


class Mean(Moments):
    """Arithmetic mean of the window (0.0 when empty)."""

    def result(self, state: list[float]) -> float:
        n = state[_N]
        return state[_X0] + state[_SX] / n if n > 0.0 else 0.0


class Std(Moments):
    """Population standard deviation of the window (0.0 with fewer than two points)."""

    def result(self, state: list[float]) -> float:
        n = state[_N]
        if n < 2.0:
            return 0.0
        mean = state[_SX] / n
        var = state[_SXX] / n - mean * mean
        return math.sqrt(var) if var > 0.0 else 0.0


class Slope(Moments):
    """Least-squares slope of value over event time, units per second (0.0 if undefined)."""

    def result(self, state: list[float]) -> float:
        n = state[_N]
        if n < 2.0:
            return 0.0
        st = state[_ST]
        den = n * state[_STT] - st * st
        if den <= 1e-12 * n * n:
            return 0.0
        return (n * state[_STX] - st * state[_SX]) / den


class _SortedWindow:
    """Base of the aggregators that read a window's points: state = [t0, x0, t1, x1, ...]."""

    def initialize(self) -> list[float]:
        return []

    def agg(self, state: list[float], ts: float, value: float) -> list[float]:
        i = len(state)
        while i > 0 and state[i - 2] > ts:
            i -= 2
        state[i:i] = [ts, value]
        return state

    def retract(self, state: list[float], ts: float, value: float) -> list[float]:
        for i in range(0, len(state), 2):
            if state[i] == ts and state[i + 1] == value:
                del state[i : i + 2]
                break
        return state


class Min(_SortedWindow):
    """Smallest value in the window (nan when empty)."""

    def result(self, state: list[float]) -> float:
        return min(state[1::2]) if state else math.nan


class Max(_SortedWindow):
    """Largest value in the window (nan when empty)."""

    def result(self, state: list[float]) -> float:
        return max(state[1::2]) if state else math.nan


class RateOfChange(_SortedWindow):
    """(last - first) / (t_last - t_first) over the window, by event time (0.0 if no span)."""

    def result(self, state: list[float]) -> float:
        if len(state) < 4:
            return 0.0
        span = state[-2] - state[0]
        return (state[-1] - state[1]) / span if span > 0.0 else 0.0


class Ewma:
    """Exponentially weighted mean with time constant `tau` seconds of event time.

    A point `dt` seconds after the previous one gets weight `1 - exp(-dt / tau)`, so the average
    does not depend on the sampling rate. With `tau=None` it is count-based with
    `alpha = 2 / (span + 1)`. Points older than the last one are ignored (EWMA is order
    dependent; window statistics take out-of-order points, this does not).
    State: [value, last_ts, n].
    """

    def __init__(self, tau: float | None = None, span: int = 10) -> None:
        if tau is not None and tau <= 0:
            raise ValueError(f"tau must be > 0 seconds or None, got {tau!r}")
        self.tau = tau
        self.alpha = 2.0 / (span + 1.0)

    def initialize(self) -> list[float]:
        return [0.0, -math.inf, 0.0]

    def agg(self, state: list[float], ts: float, value: float) -> list[float]:
        if state[2] == 0.0:
            state[0] = value
            state[1] = ts
            state[2] = 1.0
            return state
        dt = ts - state[1]
        if dt < 0.0:
            return state
        alpha = self.alpha if self.tau is None else 1.0 - math.exp(-dt / self.tau)
        state[0] += alpha * (value - state[0])
        state[1] = ts
        state[2] += 1.0
        return state

    def result(self, state: list[float]) -> float:
        return state[0] if state[2] > 0.0 else math.nan
