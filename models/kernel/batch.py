"""The batch loop: every device of a batch, every reading in arrival order, in one compiled call.

`run_batch` is `Scorer._score_device` / `_score_one` (re-deliveries, features, detectors,
seasonal profiles, calibration, threshold, alert lifecycle, failure-model rows) over the flat
arrays of `models.kernel.layout`. What it cannot represent in numbers (alert ids, drivers'
names, `ScoredReading`s) it leaves as per-reading outputs for `models.kernel.runner`. A device
the reference would fail (bad state, non-finite time or score) is flagged in `D_ERR`, and the
runner rescores it with the reference from its untouched `DeviceState`.

The steps it calls are compiled too (`batch_features`: watermark and windows; `batch_alert`:
alert lifecycle and failure-model row), so numba links them into this one machine-code call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel import detect as K
from edgeml.models.kernel import layout as L
from edgeml.models.kernel.batch_alert import alert_step, failure_row
from edgeml.models.kernel.batch_features import feature_step, idle_after

A = np.ndarray  # every array argument: numba types them at the first call

_TS_LIMIT = 1e15  # |ts| beyond this: the reference's int(ts // DAY) is not an int64


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
    late, held = feature_step(ts, D, lo, hi, e0, e1, sl, sli, start, mom, ew, bt, bv, e_slot,
                              e_val, plan, p, o_feat, o_fz)  # fmt: skip
    if (
        not held
        and D[L.D_OPEN] > 0.0
        and math.isfinite(before)
        and D[L.D_WM] - before > idle_after(D, p)
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
        if not alert_step(d, r, ts, seq, score, thr, anom, D, devi, sl, det, sea, e0, e1,
                          e_slot, p, o_i, o_f, o_feat, o_fz, o_drv, ev):  # fmt: skip
            return False
    miss = 0
    nfm = fm_slot.shape[1]
    for i in range(nfm):
        j = fm_slot[d, i]
        if j < 0 or slot_entry[j] < 0:
            miss |= 1 << i
    o_i[r, L.O_MISS] = miss
    if miss == 0:
        failure_row(d, r, score, fm_slot, sl, det, slot_entry, o_feat, o_ev, o_row, p)
    for e in range(e0, e1):
        slot_entry[e_slot[e]] = -1
    return True


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
