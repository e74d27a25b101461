"""`FeatureExtractor`: a reading's features (`FeatureRow`) from its device's windows, in event time.

The rules (grace, late, held jumps, idle resets, value clamping) are in `models.features`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from edgeml.models.aggregators import Ewma, Slope, Std
from edgeml.models.features.config import FeatureConfig
from edgeml.models.features.windows import _MOMENTS, DeviceFeatures, MetricWindows
from edgeml.topics.records import SensorReading

__all__ = ["VALUE_LIMIT", "FeatureExtractor", "FeatureRow"]

_REBASE_EVERY = 1024  # exact recompute of running sums every N updates (bounds float drift)
_TRIM_SLACK = 16  # trim the buffer's unused prefix in chunks, not on every reading
_Z_STD_FLOOR = 1e-9
VALUE_LIMIT = 1e100  # metric values are clamped to +-this (squares stay far from overflow)
_GAP_ALPHA = 0.1  # weight of one watermark advance in the typical-gap estimate

_STD = Std()
_SLOPE = Slope()


@dataclass(slots=True)
class FeatureRow:
    """The features of one reading: per metric, a vector named by `FeatureConfig.names`.

    `held`: the reading jumped ahead of the watermark and waits for a second one to confirm
    its time (see `models.features`); the scorer does not learn from it."""

    device_id: str
    ts: float
    seq: int
    late: bool
    metrics: dict[str, list[float]]
    held: bool = False


class FeatureExtractor:
    """Computes `FeatureRow`s from readings, mutating a `DeviceFeatures` per device.

    Pure event time: replaying a topic at any speed gives bit-identical features.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.names = self.config.names
        self.width = len(self.names)
        self._windows = self.config.windows
        self._time = [w.kind == "time" for w in self._windows]
        self._sizes = [w.size for w in self._windows]
        self._ewmas = [
            Ewma(tau=w.size) if w.kind == "time" else Ewma(span=int(w.size)) for w in self._windows
        ]
        # per window: (is_time, size, tau (0 = count-based), count-based alpha)
        self._plan = [
            (w.kind == "time", w.size, e.tau or 0.0, e.alpha)
            for w, e in zip(self._windows, self._ewmas, strict=True)
        ]
        self._grace = self.config.grace_s
        self._idle = self.config.idle_timeout_s
        self._max_metrics = self.config.max_metrics
        self._jump_gaps = self.config.jump_gaps
        self._idle_gaps = self.config.idle_gaps

    def new_state(self) -> DeviceFeatures:
        return DeviceFeatures()

    def is_late(self, state: DeviceFeatures, ts: float) -> bool:
        return ts < state.watermark - self._grace

    def idle_after(self, state: DeviceFeatures) -> float:
        """Event-time silence after which this device counts as idle: `idle_timeout_s`, or
        `idle_gaps` of its typical spacing for a slow sensor."""
        by_gaps = self._idle_gaps * state.gap
        return by_gaps if by_gaps > self._idle else self._idle

    def is_jump(self, state: DeviceFeatures, ts: float) -> bool:
        """Whether a reading at `ts` jumps far enough ahead to be held (`models.features`)."""
        return bool(state.readings) and ts - state.watermark > (
            self._grace + self._jump_gaps * state.gap
        )

    def update(self, state: DeviceFeatures, reading: SensorReading) -> FeatureRow:
        """Featurize one reading; inserts it into the windows unless it is late or held."""
        ts = reading.ts
        if not -math.inf < ts < math.inf:
            raise ValueError(f"reading ts must be finite, got {ts!r}")
        wm = state.watermark
        late = ts < wm - self._grace
        if late:
            return FeatureRow(
                reading.device_id, ts, reading.seq, True, self._peek_all(state, reading)
            )
        step = ts - wm  # this reading's advance of the watermark, for the typical gap
        if step > self._grace + self._jump_gaps * state.gap and state.readings:
            if state.ahead == -math.inf or ts < state.ahead - self._grace:
                # nothing held, or this one disagrees with it: hold this one
                return self._hold(state, reading)
            # a second reading agrees with the held jump: event time did move on
            step = ts - state.ahead  # the spacing after the jump, not the jump itself
            if state.ahead_reset:
                wm = state.watermark = state.ahead  # the held reading started the windows
            state.ahead = -math.inf
        elif state.ahead > -math.inf:  # back near the watermark: the held one was an outlier
            if state.ahead_reset:
                state.reset()  # drops the outlier's point (the windows started with it)
            state.ahead = -math.inf
        if step > 0.0 and wm > -math.inf:
            state.gap = step if state.gap <= 0.0 else state.gap + _GAP_ALPHA * (step - state.gap)
        if ts - wm > self.idle_after(state) and state.readings:
            state.reset()
        if ts > wm:
            wm = state.watermark = ts
        state.readings += 1
        out: dict[str, list[float]] = {}
        self._insert(state, reading, wm, out)
        return FeatureRow(reading.device_id, ts, reading.seq, False, out)

    def _hold(self, state: DeviceFeatures, reading: SensorReading) -> FeatureRow:
        """A jump ahead: featurize without moving the watermark (see `models.features`)."""
        ts = reading.ts
        state.ahead = ts
        state.ahead_reset = ts - state.watermark > self.idle_after(state)
        out: dict[str, list[float]] = {}
        if state.ahead_reset:  # idle-long ahead: the windows would restart with it anyway
            state.reset()
            self._insert(state, reading, ts, out)
        else:
            out = self._peek_all(state, reading)
        return FeatureRow(reading.device_id, ts, reading.seq, False, out, held=True)

    def _insert(
        self, state: DeviceFeatures, reading: SensorReading, wm: float, out: dict[str, list[float]]
    ) -> None:
        ts = reading.ts
        metrics = state.metrics
        for name, x in reading.metrics.items():
            if not -VALUE_LIMIT <= x <= VALUE_LIMIT:
                if x != x:
                    continue  # NaN: no value to featurize (validation rejects it earlier)
                x = VALUE_LIMIT if x > 0.0 else -VALUE_LIMIT
            mw = metrics.get(name)
            if mw is None:
                self._drop_stale(state)
                if len(metrics) >= self._max_metrics:
                    continue  # over the per-device budget: not featurized, not scored
                mw = metrics[name] = MetricWindows(len(self._windows))
            out[name] = self._update(mw, ts, x, wm)

    def _peek_all(self, state: DeviceFeatures, reading: SensorReading) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        ts = reading.ts
        for name, x in reading.metrics.items():
            if not -VALUE_LIMIT <= x <= VALUE_LIMIT:
                if x != x:
                    continue
                x = VALUE_LIMIT if x > 0.0 else -VALUE_LIMIT
            mw = state.metrics.get(name)
            if mw is None and len(out) >= self._max_metrics:
                continue
            out[name] = self._peek(mw, ts, x)
        return out

    def _drop_stale(self, state: DeviceFeatures) -> None:
        cutoff = state.watermark - self.idle_after(state)
        for name in [n for n, mw in state.metrics.items() if mw.last_ts < cutoff and mw.ts]:
            del state.metrics[name]

    def _update(self, mw: MetricWindows, ts: float, x: float, wm: float) -> list[float]:
        """Insert one point and read the features: the hot path.

        It is `Moments.agg` / `Moments.retract` and the `Std` / `Slope` / `Ewma` results fused
        and inlined (local floats, no calls per window); the unit tests hold it to a
        brute-force numpy computation and to the aggregator objects.
        """
        tl = mw.ts
        vl = mw.vs
        n = len(tl)
        if n == 0 or ts >= tl[-1]:
            tl.append(ts)
            vl.append(x)
            pos = n
        else:
            pos = bisect_right(tl, ts)
            tl.insert(pos, ts)
            vl.insert(pos, x)
        n += 1
        if ts > mw.last_ts:
            mw.last_ts = ts
        mw.updates += 1
        rebase = mw.updates % _REBASE_EVERY == 0
        feats = [x]
        starts = mw.start
        moments = mw.moments
        ewmas = mw.ewma
        for k, (is_time, size, tau, alpha) in enumerate(self._plan):
            m = moments[k]
            s = starts[k]
            mn, sx, sxx, st, stt, stx, t0, x0 = m
            inside = pos >= s
            if inside:
                if mn == 0.0:
                    t0 = ts
                    x0 = x
                t = ts - t0
                xr = x - x0
                mn += 1.0
                sx += xr
                sxx += xr * xr
                st += t
                stt += t * t
                stx += t * xr
            else:
                s += 1
            lim = wm - size if is_time else n - size  # time: ts <= cutoff; count: s < n - size
            while s < n and (tl[s] <= lim if is_time else s < lim):
                if s == pos:
                    inside = False
                if mn <= 1.0:
                    mn = sx = sxx = st = stt = stx = 0.0
                else:
                    t = tl[s] - t0
                    xr = vl[s] - x0
                    mn -= 1.0
                    sx -= xr
                    sxx -= xr * xr
                    st -= t
                    stt -= t * t
                    stx -= t * xr
                s += 1
            starts[k] = s
            if rebase:
                _MOMENTS.rebase(m, tl[s:], vl[s:])
                mn, sx, sxx, st, stt, stx, t0, x0 = m
            else:
                m[:] = (mn, sx, sxx, st, stt, stx, t0, x0)
            e = ewmas[k]
            if e[2] == 0.0:
                e[0] = x
                e[1] = ts
                e[2] = 1.0
            elif ts >= e[1]:
                a = alpha if tau <= 0.0 else 1.0 - math.exp((e[1] - ts) / tau)
                e[0] += a * (x - e[0])
                e[1] = ts
                e[2] += 1.0
            if mn <= 0.0:
                feats.extend((x, 0.0, x, x, 0.0, 0.0, e[0], 0.0))
                continue
            mx = sx / mn
            if mn >= 2.0:
                var = sxx / mn - mx * mx
                std = math.sqrt(var) if var > 0.0 else 0.0
                den = mn * stt - st * st
                slope = (mn * stx - st * sx) / den if den > 1e-12 * mn * mn else 0.0
            else:
                std = slope = 0.0
            window = vl[s:]
            span = tl[-1] - tl[s]
            roc = (vl[-1] - vl[s]) / span if span > 0.0 else 0.0
            # z of x against the window without x itself
            xr = x - x0
            if inside:
                ne = mn - 1.0
                sx -= xr
                sxx -= xr * xr
            else:
                ne = mn
            z = 0.0
            if ne >= 2.0:
                me = sx / ne
                var = sxx / ne - me * me
                if var > 0.0:
                    sd = math.sqrt(var)
                    if sd > _Z_STD_FLOOR * (1.0 + abs(x0 + me)):
                        z = (xr - me) / sd
            feats.extend((x0 + mx, std, min(window), max(window), slope, roc, e[0], z))
        low = min(starts)
        if low > _TRIM_SLACK:
            del tl[:low]
            del vl[:low]
            for k in range(len(starts)):
                starts[k] -= low
        return feats

    def _peek(self, mw: MetricWindows | None, ts: float, x: float) -> list[float]:
        """Features of a late point against the current windows, changing nothing."""
        feats = [x]
        if mw is None:
            feats.extend([x, 0.0, x, x, 0.0, 0.0, x, 0.0] * len(self._windows))
            return feats
        for k, s in enumerate(mw.start):
            e = mw.ewma[k]
            self._window_features(
                feats, mw.moments[k], mw.ts, mw.vs, s, x, e[0] if e[2] else x, False
            )
        return feats

    @staticmethod
    def _window_features(
        feats: list[float],
        m: list[float],
        tl: list[float],
        vl: list[float],
        s: int,
        x: float,
        ewma: float,
        inside: bool,
    ) -> None:
        n = m[0]
        if n <= 0.0:
            feats.extend((x, 0.0, x, x, 0.0, 0.0, ewma, 0.0))
            return
        x0 = m[7]
        mean = x0 + m[1] / n
        std = _STD.result(m)
        slope = _SLOPE.result(m)
        window = vl[s:]
        lo = min(window)
        hi = max(window)
        span = tl[-1] - tl[s]
        roc = (vl[-1] - vl[s]) / span if span > 0.0 else 0.0
        # z of x against the window without x itself
        if inside:
            xr = x - x0
            ne = n - 1.0
            sx = m[1] - xr
            sxx = m[2] - xr * xr
        else:
            xr = x - x0
            ne = n
            sx = m[1]
            sxx = m[2]
        if ne >= 2.0:
            me = sx / ne
            var = sxx / ne - me * me
            sd = math.sqrt(var) if var > 0.0 else 0.0
            z = (xr - me) / sd if sd > _Z_STD_FLOOR * (1.0 + abs(x0 + me)) else 0.0
        else:
            z = 0.0
        feats.extend((mean, std, lo, hi, slope, roc, ewma, z))
