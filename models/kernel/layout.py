"""Where each number of a device's state lives in the kernel's flat arrays (`models.kernel`).

Module-level ints, so numba folds them into the compiled code as constants.
"""

from __future__ import annotations

# --- device row (float64, one per device of the batch) ---------------------------------------
D_WM, D_READ, D_GAP, D_AHEAD, D_ARESET, D_N, D_SEQTS = range(7)
D_C0, D_C1, D_C2 = 7, 8, 9  # calibration [mean, variance, count]
D_OPEN, D_OTS, D_SEV, D_PEAK, D_ATH, D_NRUN, D_ARUN, D_LAB, D_INC = range(10, 19)  # alert
D_FORD, D_DORD, D_SORD = 19, 20, 21  # next insertion rank of features / detectors / seasons
D_ERR = 22  # 0 ok; else the device is rescored by the reference (it raises the real error)
DW = 23
# --- device row (int64) -------------------------------------------------------------------------
I_SEQ, I_OSEQ = 0, 1
IW = 2
# --- slot row (float64, one per metric of a device) ------------------------------------------
# ranks: position in the DeviceState dict (insertion order), -1 = not in that dict
S_FORD, S_DORD, S_SORD, S_LAST, S_UPD, S_N, S_BASE, S_SLEN = range(8)
SW = 8
# --- slot row (int64): the slot's region of the point buffers --------------------------------
L_OFF, L_CAP = 0, 1
# --- parameters (float64 vector) --------------------------------------------------------------
(
    P_GRACE, P_IDLE, P_JUMP, P_IDLEG,
    P_WARM, P_SWARM, P_VFR, P_RESF, P_W0, P_W1, P_W2, P_W3, P_AE, P_P0F,
    P_AF, P_AS, P_AV, P_AVS, P_AP, P_KF, P_KS, P_GUARD, P_RELN, P_RELS, P_RECN, P_FLAT,
    P_WVAR, P_WMEAN,
    P_EST, P_ALLOC, P_EXPL, P_BALPHA, P_STAU, P_MINP,
    P_CWARM, P_CVF, P_CL0, P_CWIN, P_CALPHA,
    P_BINS, P_Q, P_MARGIN, P_FLOOR, P_CEIL, P_EVERY, P_KEEP, P_MINC,
    P_OPENA, P_RESN, P_RESS, P_REL, P_WARN, P_CRIT,
    P_SPAN60, P_I10, P_I60, P_S10, P_S60, P_SL,
) = range(59)  # fmt: skip
PW = 59
# --- per-reading outputs ----------------------------------------------------------------------
# ints: redelivered, late, frozen (late or held), anomaly, missing-metric mask, silence close,
# lifecycle event (0 none, 1 open, 2 resolved), seq of the silence close
O_RED, O_LATE, O_FROZEN, O_ANOM, O_MISS, O_CLOSE, O_EVENT, O_CSEQ = range(8)
OIW = 8
# floats: score, threshold, then two alert records (ts, score, threshold, opened_ts, severity)
O_SCORE, O_THR, O_C, O_E = 0, 1, 2, 7
OFW = 12
SEASON_WIDTH = 200  # models.seasonal: header 8 + 4 x 48 bins
SEASON_HEADER = 8
DETECTOR_WIDTH = 12
