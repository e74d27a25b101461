"""The window update and the late-reading peek of `models.features`, compiled.

Line for line `FeatureExtractor._update` / `_peek` over one metric's slot of the flat arrays:
the points live in `bt`/`bv[off + base : off + base + n]` (`base` moves when the unused
prefix is trimmed, as `del tl[:low]` does), the same float operations in the same order, so
the features and the state equal the reference's bit for bit (tests/unit/models/kernel).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel.layout import L_OFF, S_BASE, S_LAST, S_N, S_UPD

REBASE_EVERY = 1024  # models.features.extractor._REBASE_EVERY
TRIM_SLACK = 16  # models.features.extractor._TRIM_SLACK
Z_STD_FLOOR = 1e-9


@njit(cache=True)
def new_windows(j: int, sl: np.ndarray, start: np.ndarray, mom: np.ndarray, ew: np.ndarray) -> None:
    """A fresh `MetricWindows` in slot `j` (its buffer region is reused from the start)."""
    sl[j, S_N] = 0.0
    sl[j, S_BASE] = 0.0
    sl[j, S_LAST] = -math.inf
    sl[j, S_UPD] = 0.0
    for k in range(start.shape[1]):
        start[j, k] = 0
        for i in range(8):
            mom[j, k, i] = 0.0
        ew[j, k, 0] = 0.0
        ew[j, k, 1] = -math.inf
        ew[j, k, 2] = 0.0


@njit(cache=True)
def update(
    j: int, ts: float, x: float, wm: float,
    sl: np.ndarray, sli: np.ndarray, start: np.ndarray, mom: np.ndarray, ew: np.ndarray,
    bt: np.ndarray, bv: np.ndarray, plan: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """`FeatureExtractor._update`: insert one point, write the features into `out`."""
    b = sli[j, L_OFF] + int(sl[j, S_BASE])
    n = int(sl[j, S_N])
    if n == 0 or ts >= bt[b + n - 1]:
        bt[b + n] = ts
        bv[b + n] = x
        pos = n
    else:
        lo, hi = 0, n
        while lo < hi:  # bisect_right
            mid = (lo + hi) // 2
            if ts < bt[b + mid]:
                hi = mid
            else:
                lo = mid + 1
        pos = lo
        for i in range(n, pos, -1):
            bt[b + i] = bt[b + i - 1]
            bv[b + i] = bv[b + i - 1]
        bt[b + pos] = ts
        bv[b + pos] = x
    n += 1
    sl[j, S_N] = n
    if ts > sl[j, S_LAST]:
        sl[j, S_LAST] = ts
    upd = sl[j, S_UPD] + 1.0
    sl[j, S_UPD] = upd
    rebase = int(upd) % REBASE_EVERY == 0
    out[0] = x
    nk = plan.shape[0]
    for k in range(nk):
        is_time = plan[k, 0] > 0.0
        size = plan[k, 1]
        tau = plan[k, 2]
        alpha = plan[k, 3]
        m = mom[j, k]
        s = start[j, k]
        mn, sx, sxx, st, stt, stx, t0, x0 = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
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
        lim = wm - size if is_time else n - size
        while s < n and (bt[b + s] <= lim if is_time else s < lim):
            if s == pos:
                inside = False
            if mn <= 1.0:
                mn = sx = sxx = st = stt = stx = 0.0
            else:
                t = bt[b + s] - t0
                xr = bv[b + s] - x0
                mn -= 1.0
                sx -= xr
                sxx -= xr * xr
                st -= t
                stt -= t * t
                stx -= t * xr
            s += 1
        start[j, k] = s
        if rebase:  # Moments.rebase: anchored at the window's first point, summed exactly
            t0 = bt[b + s] if s < n else 0.0
            x0 = bv[b + s] if s < n else 0.0
            mn = sx = sxx = st = stt = stx = 0.0
            for i in range(s, n):
                if mn == 0.0:
                    t0 = bt[b + i]
                    x0 = bv[b + i]
                t = bt[b + i] - t0
                xr = bv[b + i] - x0
                mn += 1.0
                sx += xr
                sxx += xr * xr
                st += t
                stt += t * t
                stx += t * xr
        m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7] = mn, sx, sxx, st, stt, stx, t0, x0
        e = ew[j, k]
        if e[2] == 0.0:
            e[0] = x
            e[1] = ts
            e[2] = 1.0
        elif ts >= e[1]:
            a = alpha if tau <= 0.0 else 1.0 - math.exp((e[1] - ts) / tau)
            e[0] += a * (x - e[0])
            e[1] = ts
            e[2] += 1.0
        o = 1 + 8 * k
        if mn <= 0.0:
            out[o], out[o + 1], out[o + 2], out[o + 3] = x, 0.0, x, x
            out[o + 4], out[o + 5], out[o + 6], out[o + 7] = 0.0, 0.0, e[0], 0.0
            continue
        mx = sx / mn
        if mn >= 2.0:
            var = sxx / mn - mx * mx
            std = math.sqrt(var) if var > 0.0 else 0.0
            den = mn * stt - st * st
            slope = (mn * stx - st * sx) / den if den > 1e-12 * mn * mn else 0.0
        else:
            std = slope = 0.0
        lo_v = bv[b + s]
        hi_v = lo_v
        for i in range(s + 1, n):
            v = bv[b + i]
            if v < lo_v:
                lo_v = v
            if v > hi_v:
                hi_v = v
        span = bt[b + n - 1] - bt[b + s]
        roc = (bv[b + n - 1] - bv[b + s]) / span if span > 0.0 else 0.0
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
                if sd > Z_STD_FLOOR * (1.0 + abs(x0 + me)):
                    z = (xr - me) / sd
        out[o], out[o + 1], out[o + 2], out[o + 3] = x0 + mx, std, lo_v, hi_v
        out[o + 4], out[o + 5], out[o + 6], out[o + 7] = slope, roc, e[0], z
    low = start[j, 0]
    for k in range(1, nk):
        if start[j, k] < low:
            low = start[j, k]
    if low > TRIM_SLACK:
        sl[j, S_BASE] += low
        sl[j, S_N] = n - low
        for k in range(nk):
            start[j, k] -= low


@njit(cache=True)
def peek(
    j: int, x: float, sl: np.ndarray, sli: np.ndarray, start: np.ndarray, mom: np.ndarray,
    ew: np.ndarray, bt: np.ndarray, bv: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """`FeatureExtractor._peek` (`j` < 0: the metric has no windows): changes nothing."""
    out[0] = x
    nk = start.shape[1]
    for k in range(nk):
        o = 1 + 8 * k
        if j < 0:
            out[o], out[o + 1], out[o + 2], out[o + 3] = x, 0.0, x, x
            out[o + 4], out[o + 5], out[o + 6], out[o + 7] = 0.0, 0.0, x, 0.0
            continue
        e = ew[j, k]
        ewma = e[0] if e[2] != 0.0 else x
        m = mom[j, k]
        n = m[0]
        if n <= 0.0:
            out[o], out[o + 1], out[o + 2], out[o + 3] = x, 0.0, x, x
            out[o + 4], out[o + 5], out[o + 6], out[o + 7] = 0.0, 0.0, ewma, 0.0
            continue
        b = sli[j, L_OFF] + int(sl[j, S_BASE])
        cnt = int(sl[j, S_N])
        s = start[j, k]
        x0 = m[7]
        mean = x0 + m[1] / n
        std = 0.0
        if n >= 2.0:
            mu = m[1] / n
            var = m[2] / n - mu * mu
            std = math.sqrt(var) if var > 0.0 else 0.0
        slope = 0.0
        if n >= 2.0:
            st = m[3]
            den = n * m[4] - st * st
            if not den <= 1e-12 * n * n:
                slope = (n * m[5] - st * m[1]) / den
        lo_v = bv[b + s]
        hi_v = lo_v
        for i in range(s + 1, cnt):
            v = bv[b + i]
            if v < lo_v:
                lo_v = v
            if v > hi_v:
                hi_v = v
        span = bt[b + cnt - 1] - bt[b + s]
        roc = (bv[b + cnt - 1] - bv[b + s]) / span if span > 0.0 else 0.0
        xr = x - x0
        z = 0.0
        if n >= 2.0:
            me = m[1] / n
            var = m[2] / n - me * me
            sd = math.sqrt(var) if var > 0.0 else 0.0
            z = (xr - me) / sd if sd > Z_STD_FLOOR * (1.0 + abs(x0 + me)) else 0.0
        out[o], out[o + 1], out[o + 2], out[o + 3] = mean, std, lo_v, hi_v
        out[o + 4], out[o + 5], out[o + 6], out[o + 7] = slope, roc, ewma, z
