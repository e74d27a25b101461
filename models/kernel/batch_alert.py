"""The steps of the batch loop after a reading's score (`models.kernel.batch`).

`alert_step` is `AlertPolicy.update` over the device's row (an opened incident's drivers'
evidence goes to `o_drv`, for the runner to name); `failure_row` is `FailureInputs.row`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel import detect as K
from edgeml.models.kernel import layout as L

A = np.ndarray  # every array argument: numba types them at the first call


@njit(cache=True)
def alert_step(
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
def failure_row(
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
