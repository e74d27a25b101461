"""The batch loop: every device of a batch, every reading in arrival order, in one compiled call.

`run_batch` is `Scorer._score_device` / `_score_one` (re-deliveries, features, detectors,
seasonal profiles, calibration, threshold, alert lifecycle, failure-model rows) over the flat
arrays of `models.kernel.layout`. What it cannot represent in numbers (alert ids, drivers'
names, `ScoredReading`s) it leaves as per-reading outputs for `models.kernel.runner`. A device
the reference would fail (bad state, non-finite time or score) is flagged in `D_ERR`, and the
runner rescores it with the reference from its untouched `DeviceState`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel import detect as K
from edgeml.models.kernel import features as F
from edgeml.models.kernel import layout as L

A = np.ndarray  # every array argument: numba types them at the first call

_VL = 1e100
_TS_LIMIT = 1e15  # |ts| beyond this: the reference's int(ts // DAY) is not an int64


@njit(cache=True)
def _idle_after(
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
            cutoff = D[L.D_WM] - _idle_after(D, p)  # _drop_stale
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
def _features(
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
            reset = ts - D[L.D_WM] > _idle_after(D, p)
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
    if ts - wm > _idle_after(D, p) and D[L.D_READ] > 0.0:
        for i in range(lo, hi):
            sl[i, L.S_FORD] = -1.0
    if ts > wm:
        wm = ts
        D[L.D_WM] = ts
    D[L.D_READ] += 1.0
    _insert(ts, wm, D, lo, hi, e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot, e_val, plan, p,
            o_feat, o_fz)  # fmt: skip
    return False, False


@njit(cache=True)
def _score_one(
    d: int,
    r: int,
    ts: float,
    seq: int,
    dev: A,
    devi: A,
    th: A,
    lo: int,
    hi: int,
    sl: A,
    sli: A,
    start: A,
    mom: A,
    ew: A,
    det: A,
    sea: A,
    bt: A,
    bv: A,
    e_off: A,
    e_slot: A,
    e_val: A,
    fm_slot: A,
    plan: A,
    p: A,
    o_i: A,
    o_f: A,
    o_feat: A,
    o_fz: A,
    o_ev: A,
    o_drv: A,
    o_row: A,
    ev: A,
    tmp_det: A,
    tmp_sea: A,
    slot_entry: A,
) -> bool:
    """`Scorer._score_one` for reading `r` of device `d`; False where the reference raises."""
    D = dev[d]
    e0, e1 = e_off[r], e_off[r + 1]
    before = D[L.D_WM]
    late, held = _features(ts, D, lo, hi, e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot,
                           e_val, plan, p, o_feat, o_fz)  # fmt: skip
    if (
        not held
        and D[L.D_OPEN] > 0.0
        and math.isfinite(before)
        and D[L.D_WM] - before > _idle_after(D, p)
    ):  # Scorer._after_silence
        o_i[r, L.O_CLOSE] = 1
        o_i[r, L.O_CSEQ] = devi[d, L.I_SEQ]
        c = L.O_C
        o_f[r, c], o_f[r, c + 1], o_f[r, c + 2] = before, D[L.D_PEAK], D[L.D_ATH]
        o_f[r, c + 3], o_f[r, c + 4] = D[L.D_OTS], D[L.D_SEV]
        D[L.D_OPEN] = 0.0
        D[L.D_NRUN] = 0.0
        D[L.D_ARUN] = 0.0
    frozen = late or held
    o_i[r, L.O_LATE] = 1 if late else 0
    o_i[r, L.O_FROZEN] = 1 if frozen else 0
    best = 0.0
    all_normal = True
    for e in range(e0, e1):
        if o_fz[e] == 0:
            continue
        j = e_slot[e]
        slot_entry[j] = e
        x = o_feat[e, 0]
        if sl[j, L.S_DORD] >= 0.0:
            s = det[j]
        elif frozen:
            s = tmp_det
            K.new_detector(s, x)
        else:
            s = det[j]
            K.new_detector(s, x)
            sl[j, L.S_DORD] = D[L.D_DORD]
            D[L.D_DORD] += 1.0
        if sl[j, L.S_SORD] >= 0.0:
            sp = sea[j]
            width = sl[j, L.S_SLEN]
        elif frozen:
            sp = tmp_sea
            K.new_season(sp, ts, x)
            width = 8.0
        else:
            sp = sea[j]
            K.new_season(sp, ts, x)
            width = 8.0
            sl[j, L.S_SLEN] = 8.0
            sl[j, L.S_SORD] = D[L.D_SORD]
            D[L.D_SORD] += 1.0
        if sp[0] > 0.0 and width != L.SEASON_WIDTH:
            return False  # an established profile without bins: the reference raises
        u = K.clamp(x - K.expected(sp, ts))
        if not K.score_one(s, u, x, p, ev):
            return False
        top = max(max(ev[0], ev[1]), max(ev[2], ev[3]))
        o_ev[e] = top
        if top > best:
            best = top
        if not frozen:
            normal = K.learn_one(s, u, ev, x, ts, p)
            all_normal = all_normal and normal
            switched, width = K.season_learn(sp, width, ts, x, normal, p)
            sl[j, L.S_SLEN] = width
            if switched:
                K.rebase(s, K.clamp(x - K.expected(sp, ts)), sp[5])
    score = K.calib_score(D, best, p)
    if not frozen and best > 0.0 and all_normal:
        K.calib_learn(D, best, p)
    if not 0.0 <= score <= 1.0:
        return False  # ScoringFault
    bins = int(p[L.P_BINS])
    h = th[d]
    thr = h[bins] if h[bins] > 0.0 else p[L.P_FLOOR]
    anom = score > thr
    o_f[r, L.O_SCORE] = score
    o_f[r, L.O_THR] = thr
    o_i[r, L.O_ANOM] = 1 if anom else 0
    if not frozen:
        D[L.D_N] += 1.0
        if not anom and not D[L.D_OPEN] > 0.0:
            K.threshold_learn(h, score, D[L.D_N], p)
        if not _alert(d, r, ts, seq, score, thr, anom, D, devi, sl, det, sea, e0, e1, e_slot,
                      p, o_i, o_f, o_feat, o_fz, o_drv, ev):  # fmt: skip
            return False
    miss = 0
    nfm = fm_slot.shape[1]
    for i in range(nfm):
        j = fm_slot[d, i]
        if j < 0 or slot_entry[j] < 0:
            miss |= 1 << i
    o_i[r, L.O_MISS] = miss
    if miss == 0:
        _row(d, r, score, fm_slot, sl, det, slot_entry, o_feat, o_ev, o_row, p)
    for e in range(e0, e1):
        slot_entry[e_slot[e]] = -1
    return True


@njit(cache=True)
def _alert(
    d: int,
    r: int,
    ts: float,
    seq: int,
    score: float,
    thr: float,
    anom: bool,
    D: A,
    devi: A,
    sl: A,
    det: A,
    sea: A,
    e0: int,
    e1: int,
    e_slot: A,
    p: A,
    o_i: A,
    o_f: A,
    o_feat: A,
    o_fz: A,
    o_drv: A,
    ev: A,
) -> bool:
    """`AlertPolicy.update`; an opened incident's drivers' evidence goes to `o_drv`."""
    is_anom = anom
    if D[L.D_OPEN] > 0.0 and not is_anom and score >= p[L.P_REL] * thr:
        is_anom = True
    c = L.O_E
    if is_anom:
        D[L.D_ARUN] += 1.0
        D[L.D_NRUN] = 0.0
        D[L.D_LAB] = ts
        if D[L.D_OPEN] > 0.0:
            if score > D[L.D_PEAK]:
                D[L.D_PEAK] = score
                sev = K.severity(score, thr, p)
                if sev > D[L.D_SEV]:
                    D[L.D_SEV] = sev
            return True
        if D[L.D_ARUN] < p[L.P_OPENA]:
            return True
        D[L.D_OPEN] = 1.0
        devi[d, L.I_OSEQ] = seq
        D[L.D_OTS] = ts
        D[L.D_PEAK] = score
        D[L.D_ATH] = thr
        D[L.D_SEV] = K.severity(score, thr, p)
        for e in range(e0, e1):  # Scorer._drivers: the metrics' evidence after learning
            if o_fz[e] == 0:
                continue
            j = e_slot[e]
            if sl[j, L.S_DORD] < 0.0:
                continue
            x = o_feat[e, 0]
            u = K.clamp(x - K.expected(sea[j], ts)) if sl[j, L.S_SORD] >= 0.0 else x
            if not K.score_one(det[j], u, x, p, ev):
                return False
            k = 0
            for i in range(1, 4):
                if ev[i] > ev[k]:
                    k = i
            o_drv[e, 0] = ev[k]
            o_drv[e, 1] = k
        D[L.D_INC] += 1.0
        o_i[r, L.O_EVENT] = 1
        o_f[r, c], o_f[r, c + 1], o_f[r, c + 2] = ts, score, thr
        o_f[r, c + 3], o_f[r, c + 4] = ts, D[L.D_SEV]
        return True
    D[L.D_ARUN] = 0.0
    if not D[L.D_OPEN] > 0.0:
        return True
    D[L.D_NRUN] += 1.0
    if D[L.D_NRUN] >= p[L.P_RESN] and ts - D[L.D_LAB] >= p[L.P_RESS]:
        o_i[r, L.O_EVENT] = 2
        o_f[r, c], o_f[r, c + 1], o_f[r, c + 2] = ts, D[L.D_PEAK], D[L.D_ATH]
        o_f[r, c + 3], o_f[r, c + 4] = D[L.D_OTS], D[L.D_SEV]
        D[L.D_OPEN] = 0.0
        D[L.D_NRUN] = 0.0
        D[L.D_ARUN] = 0.0
    return True


@njit(cache=True)
def _row(
    d: int,
    r: int,
    score: float,
    fm_slot: A,
    sl: A,
    det: A,
    slot_entry: A,
    o_feat: A,
    o_ev: A,
    o_row: A,
    p: A,
) -> None:
    """`FailureInputs.row`: the canonical failure-model row of reading `r`."""
    i10, i60 = int(p[L.P_I10]), int(p[L.P_I60])
    s10, s60, isl = int(p[L.P_S10]), int(p[L.P_S60]), int(p[L.P_SL])
    span60 = p[L.P_SPAN60]
    nfm = fm_slot.shape[1]
    for i in range(nfm):
        j = fm_slot[d, i]
        e = slot_entry[j]
        o = 7 * i
        b = det[j]
        if sl[j, L.S_DORD] < 0.0 or b[4] < 2.0:
            for q in range(7):
                o_row[r, o + q] = 0.0
            continue
        f = o_feat[e]
        mu = b[2]
        var = b[3]
        sd = math.sqrt(var) if var > 0.0 else 0.0
        floor = 1e-6 * (1.0 + abs(mu))
        if sd < floor:
            sd = floor
        m60 = f[i60]
        den = abs(mu) if abs(mu) > sd else sd
        o_row[r, o] = (f[i10] - mu) / sd
        o_row[r, o + 1] = (m60 - mu) / sd
        o_row[r, o + 2] = f[isl] * span60 / sd
        o_row[r, o + 3] = f[s10] / sd
        o_row[r, o + 4] = f[s60] / sd
        o_row[r, o + 5] = (m60 - mu) / den
        o_row[r, o + 6] = o_ev[e]
    o_row[r, 7 * nfm] = score


@njit(cache=True)
def run_batch(
    dev: A,
    devi: A,
    th: A,
    s_off: A,
    sl: A,
    sli: A,
    start: A,
    mom: A,
    ew: A,
    det: A,
    sea: A,
    bt: A,
    bv: A,
    r_off: A,
    rts: A,
    rseq: A,
    e_off: A,
    e_slot: A,
    e_val: A,
    fm_slot: A,
    plan: A,
    p: A,
    o_i: A,
    o_f: A,
    o_feat: A,
    o_fz: A,
    o_ev: A,
    o_drv: A,
    o_row: A,
) -> None:
    """Score every device's readings (`Scorer._score_device` per device, in batch order)."""
    ev = np.zeros(4)
    tmp_det = np.zeros(L.DETECTOR_WIDTH)
    tmp_sea = np.zeros(L.SEASON_WIDTH)
    slot_entry = np.full(sl.shape[0], -1, np.int64)
    for d in range(dev.shape[0]):
        D = dev[d]
        lo, hi = s_off[d], s_off[d + 1]
        for r in range(r_off[d], r_off[d + 1]):
            ts = rts[r]
            seq = rseq[r]
            if not abs(ts) <= _TS_LIMIT:  # non-finite too: the reference raises
                D[L.D_ERR] = 1.0
                break
            if seq <= devi[d, L.I_SEQ]:
                if ts <= D[L.D_WM] or (seq == devi[d, L.I_SEQ] and ts == D[L.D_SEQTS]):
                    o_i[r, L.O_RED] = 1
                    continue
                jump = D[L.D_READ] > 0.0 and ts - D[L.D_WM] > (
                    p[L.P_GRACE] + p[L.P_JUMP] * D[L.D_GAP]
                )
                if not jump:
                    devi[d, L.I_SEQ] = seq
                    D[L.D_SEQTS] = ts
            else:
                devi[d, L.I_SEQ] = seq
                D[L.D_SEQTS] = ts
            if not _score_one(d, r, ts, seq, dev, devi, th, lo, hi, sl, sli, start, mom, ew,
                              det, sea, bt, bv, e_off, e_slot, e_val, fm_slot, plan, p, o_i,
                              o_f, o_feat, o_fz, o_ev, o_drv, o_row, ev, tmp_det, tmp_sea,
                              slot_entry):  # fmt: skip
                D[L.D_ERR] = 1.0
                for e in range(e_off[r], e_off[r + 1]):
                    slot_entry[e_slot[e]] = -1
                break
