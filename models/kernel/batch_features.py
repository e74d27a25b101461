"""The feature step of the batch loop (`models.kernel.batch`): `FeatureExtractor.update`.

The watermark, the held-ahead reading and the idle reset over a device's row, then each metric's
window update (`models.kernel.features`) or, for a late or held reading, the peek that leaves
the windows as they were.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel import features as F
from edgeml.models.kernel import layout as L

A = np.ndarray  # every array argument: numba types them at the first call

_VL = 1e100


@njit(cache=True)
def idle_after(
    D: np.ndarray,
    p: np.ndarray,
) -> float:
    by_gaps = p[L.P_IDLEG] * D[L.D_GAP]
    return by_gaps if by_gaps > p[L.P_IDLE] else p[L.P_IDLE]


@njit(cache=True)
def _insert(
    ts: float,
    wm: float,
    D: A,
    lo: int,
    hi: int,
    e0: int,
    e1: int,
    sl: A,
    sli: A,
    start: A,
    mom: A,
    ew: A,
    bt: A,
    bv: A,
    e_slot: A,
    e_val: A,
    plan: A,
    p: A,
    o_feat: A,
    o_fz: A,
) -> None:
    """`FeatureExtractor._insert` (the metric budget never binds: the runner checks it)."""
    for e in range(e0, e1):
        x = e_val[e]
        if not -_VL <= x <= _VL:
            if x != x:
                continue
            x = _VL if x > 0.0 else -_VL
        j = e_slot[e]
        if sl[j, L.S_FORD] < 0.0:
            cutoff = D[L.D_WM] - idle_after(D, p)  # _drop_stale
            for i in range(lo, hi):
                if sl[i, L.S_FORD] >= 0.0 and sl[i, L.S_LAST] < cutoff and sl[i, L.S_N] > 0.0:
                    sl[i, L.S_FORD] = -1.0
            F.new_windows(j, sl, start, mom, ew)
            sl[j, L.S_FORD] = D[L.D_FORD]
            D[L.D_FORD] += 1.0
        o_fz[e] = 1
        F.update(j, ts, x, wm, sl, sli, start, mom, ew, bt, bv, plan, o_feat[e])


@njit(cache=True)
def _peek_all(
    e0: int,
    e1: int,
    sl: A,
    sli: A,
    start: A,
    mom: A,
    ew: A,
    bt: A,
    bv: A,
    e_slot: A,
    e_val: A,
    o_feat: A,
    o_fz: A,
) -> None:
    for e in range(e0, e1):
        x = e_val[e]
        if not -_VL <= x <= _VL:
            if x != x:
                continue
            x = _VL if x > 0.0 else -_VL
        j = e_slot[e]
        F.peek(j if sl[j, L.S_FORD] >= 0.0 else -1, x, sl, sli, start, mom, ew, bt, bv, o_feat[e])
        o_fz[e] = 1


@njit(cache=True)
def feature_step(
    ts: float,
    D: A,
    lo: int,
    hi: int,
    e0: int,
    e1: int,
    sl: A,
    sli: A,
    start: A,
    mom: A,
    ew: A,
    bt: A,
    bv: A,
    e_slot: A,
    e_val: A,
    plan: A,
    p: A,
    o_feat: A,
    o_fz: A,
) -> tuple[bool, bool]:
    """`FeatureExtractor.update` / `_hold`: returns (late, held)."""
    grace = p[L.P_GRACE]
    wm = D[L.D_WM]
    if ts < wm - grace:
        _peek_all(e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot, e_val, o_feat, o_fz)
        return True, False
    step = ts - wm
    if step > grace + p[L.P_JUMP] * D[L.D_GAP] and D[L.D_READ] > 0.0:
        if D[L.D_AHEAD] == -math.inf or ts < D[L.D_AHEAD] - grace:
            D[L.D_AHEAD] = ts
            reset = ts - D[L.D_WM] > idle_after(D, p)
            D[L.D_ARESET] = 1.0 if reset else 0.0
            if reset:
                for i in range(lo, hi):
                    sl[i, L.S_FORD] = -1.0
                _insert(ts, ts, D, lo, hi, e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot,
                        e_val, plan, p, o_feat, o_fz)  # fmt: skip
            else:
                _peek_all(e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot, e_val, o_feat, o_fz)
            return False, True
        step = ts - D[L.D_AHEAD]
        if D[L.D_ARESET] > 0.0:
            wm = D[L.D_AHEAD]
            D[L.D_WM] = wm
        D[L.D_AHEAD] = -math.inf
    elif D[L.D_AHEAD] > -math.inf:
        if D[L.D_ARESET] > 0.0:
            for i in range(lo, hi):
                sl[i, L.S_FORD] = -1.0
        D[L.D_AHEAD] = -math.inf
    if step > 0.0 and wm > -math.inf:
        g = D[L.D_GAP]
        D[L.D_GAP] = step if g <= 0.0 else g + 0.1 * (step - g)
    if ts - wm > idle_after(D, p) and D[L.D_READ] > 0.0:
        for i in range(lo, hi):
            sl[i, L.S_FORD] = -1.0
    if ts > wm:
        wm = ts
        D[L.D_WM] = ts
    D[L.D_READ] += 1.0
    _insert(ts, wm, D, lo, hi, e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot, e_val, plan, p,
            o_feat, o_fz)  # fmt: skip
    return False, False
