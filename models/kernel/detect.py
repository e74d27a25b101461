"""`ResidualDetector`, `SeasonalProfile`, `ScoreCalibrator`, `AdaptiveThreshold` and the alert
lifecycle's numeric part, compiled: the same float operations in the same order as the
reference modules (`models.detectors`, `.seasonal`, `.calibration`, `.alerting`).

A state the reference would refuse (`DetectorStateError`, a seasonal state of another width)
makes these return an error flag instead of raising: the batch loop then leaves the device to
the reference, which raises the real error (`models.kernel.runner`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from edgeml.models.kernel import layout as L

VALUE_LIMIT = 1e100
_VAR_LIMIT = 4.0 * VALUE_LIMIT * VALUE_LIMIT
_DAY = 86400.0
_BINS = 48
_HALF = _DAY / _BINS
_LOG10 = math.log(10.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)
# seasonal header
_MODE, _FIRST, _LAST, _MEAN, _VTOT, _VSEA, _NSEA = range(7)
_H = 8


@njit(cache=True)
def clamp(x: float) -> float:
    return x if -VALUE_LIMIT <= x <= VALUE_LIMIT else (VALUE_LIMIT if x > 0 else -VALUE_LIMIT)


@njit(cache=True)
def tail_z(log_p: float) -> float:
    if log_p >= -0.01:
        return 0.0
    z = math.sqrt(-2.0 * log_p)
    for _ in range(2):
        z = math.sqrt(max(0.0, -2.0 * (log_p + math.log(max(z, 1e-3) * 1.2533141373155))))
    return z


@njit(cache=True)
def energy_z(energy: float, alpha: float) -> float:
    if energy <= 1.0:
        return 0.0
    k = (2.0 - alpha) / alpha
    v = 2.0 / (9.0 * k)
    return max(0.0, (energy ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v))


@njit(cache=True)
def new_detector(s: np.ndarray, x: float) -> None:
    s[0], s[1], s[2], s[3], s[4], s[5] = x, 0.0, x, 0.0, 0.0, x
    s[6], s[7], s[8], s[9], s[10], s[11] = 0.0, 0.05, 1.0, 0.0, 0.0, 0.0


@njit(cache=True)
def score_one(s: np.ndarray, x: float, raw: float, p: np.ndarray, ev: np.ndarray) -> bool:
    """`ResidualDetector.score_one` into `ev`; False where the reference raises."""
    ms = s[2]
    if not (
        -VALUE_LIMIT <= x <= VALUE_LIMIT
        and -VALUE_LIMIT <= ms <= VALUE_LIMIT
        and -VALUE_LIMIT <= s[0] <= VALUE_LIMIT
        and 0.0 <= s[1] <= _VAR_LIMIT
        and 0.0 <= s[3] <= _VAR_LIMIT
        and 0.0 <= s[8] <= 100.0
        and s[4] >= 0.0
    ):
        return False
    ev[0] = ev[1] = ev[2] = ev[3] = 0.0
    if s[4] < p[L.P_WARM]:
        return True
    m = 1.0 + abs(ms)
    floor = p[L.P_VFR] * m * m
    res = p[L.P_RESF] * s[10]
    if res * res > floor:
        floor = res * res
    vf = s[1] if s[1] > floor else floor
    vs = s[3] if s[3] > floor else floor
    zs = p[L.P_W1] * abs(x - s[2]) / math.sqrt(vs) if s[4] >= p[L.P_SWARM] else 0.0
    ev[1] = zs
    if s[9] < 0.0:
        return True
    rf = x - s[0]
    ev[0] = p[L.P_W0] * abs(rf) / math.sqrt(vf)
    ae = p[L.P_AE]
    en = s[8] + ae * (rf * rf / vf - s[8])
    ev[2] = p[L.P_W2] * energy_z(en, ae)
    run = s[6] + 1.0 if raw == s[5] else 0.0
    p0 = s[7] if s[7] > p[L.P_P0F] else p[L.P_P0F]
    ev[3] = p[L.P_W3] * tail_z(run * math.log(p0)) if run >= 2.0 else 0.0
    return True


@njit(cache=True)
def learn_one(
    s: np.ndarray, x: float, ev: np.ndarray, raw: float, ts: float, p: np.ndarray
) -> bool:
    """`ResidualDetector.learn_one`: returns whether all baselines learned."""
    value = raw
    repeat = value == s[5]
    step = abs(value - s[5])
    if step > 0.0 and (step < s[10] or s[10] == 0.0):
        s[10] = step
    s[6] = s[6] + 1.0 if repeat else 0.0
    s[5] = value
    n = s[4]
    if n < 2.0:
        s[0] = x
        s[2] = x
        s[4] = n + 1.0
        return True
    if s[9] < 0.0:
        s[0] = x
        s[9] = 0.0
        return False
    warm = n >= p[L.P_WARM]
    guard = p[L.P_GUARD]
    rf = x - s[0]
    rs = x - s[2]
    vf = s[1]
    ae = p[L.P_AE]
    if vf > 0.0:
        e = rf * rf / vf
        s[8] += ae * ((e if e < 100.0 else 100.0) - s[8])
    held = warm and (ev[0] > guard or ev[1] > guard or ev[2] > guard or ev[3] > guard)
    if held and s[9] == 0.0:
        s[11] = ts
    if held and s[9] < p[L.P_RELN] and ts - s[11] < p[L.P_RELS]:
        s[9] += 1.0
        if s[9] > p[L.P_RECN]:
            s[0] += p[L.P_AF] * rf
        else:
            lim = guard * math.sqrt(vf) if vf > 0.0 else abs(rf)
            s[0] += p[L.P_AF] * (rf if -lim <= rf <= lim else (lim if rf > 0 else -lim))
        return False
    if held:
        s[2] = s[0]
        s[3] = max(s[3], s[1])
        if repeat:
            s[7] = max(s[7], p[L.P_FLAT])
        s[6] = 0.0
    s[9] = 0.0
    s[4] = n + 1.0
    vs = s[3]
    if warm:
        r2 = rf * rf
        cap = 9.0 * vf
        s[1] += p[L.P_AV] * ((r2 if r2 < cap else cap) / p[L.P_KF] - vf)
    else:
        s[1] += max(p[L.P_AV], 1.0 / n) * (rf * rf - vf)
    if n >= p[L.P_SWARM]:
        r2 = rs * rs
        cap = p[L.P_WVAR] * p[L.P_WVAR] * vs
        s[3] += p[L.P_AVS] * ((r2 if r2 < cap else cap) / p[L.P_KS] - vs)
        lim = p[L.P_WMEAN] * math.sqrt(vs)
        s[2] += p[L.P_AS] * (rs if -lim <= rs <= lim else (lim if rs > 0 else -lim))
    else:
        s[3] += max(p[L.P_AVS], 1.0 / n) * (rs * rs - vs)
        s[2] += max(p[L.P_AS], 1.0 / n) * rs
    s[0] += p[L.P_AF] * rf
    s[7] += p[L.P_AP] * ((1.0 if repeat else 0.0) - s[7])
    return True


@njit(cache=True)
def rebase(s: np.ndarray, x: float, var: float) -> None:
    v = var if 0.0 <= var <= _VAR_LIMIT else 0.0
    s[0] = x
    s[2] = x
    s[1] = v
    s[3] = v
    s[8] = 1.0
    s[9] = 0.0


# --- seasonal ----------------------------------------------------------------------------------
@njit(cache=True)
def season_bin(ts: float) -> int:
    days = int(ts // _DAY)
    weekend = (days + 3) % 7 >= 5
    return int((ts - days * _DAY) // _HALF) + (_BINS if weekend else 0)


@njit(cache=True)
def _predict(s: np.ndarray, b: int) -> tuple[bool, float]:
    if s[_H + 2 * _BINS + b] > 0.0:
        return True, s[_H + b]
    other = b + _BINS if b < _BINS else b - _BINS
    if s[_H + 2 * _BINS + other] > 0.0:
        return True, s[_H + other]
    return False, 0.0


@njit(cache=True)
def expected(s: np.ndarray, ts: float) -> float:
    if s[_MODE] <= 0.0:
        return 0.0
    ok, value = _predict(s, season_bin(ts))
    return value if ok else s[_MEAN]


@njit(cache=True)
def new_season(s: np.ndarray, ts: float, x: float) -> None:
    s[0], s[1], s[2], s[3] = 0.0, ts, ts, x
    s[4] = s[5] = s[6] = s[7] = 0.0


@njit(cache=True)
def season_learn(
    s: np.ndarray, width: float, ts: float, x: float, normal: bool, p: np.ndarray
) -> tuple[bool, float]:
    """`SeasonalProfile.learn`; `width` is the state's length (8 until the bins exist).
    Returns (switched, new width)."""
    dt = ts - s[_LAST]
    if dt < 0.0:
        return False, width
    s[_LAST] = ts
    a = dt / p[L.P_STAU]
    a = 1.0 if a > 1.0 else (a if a > 1e-3 else 1e-3)
    rt = x - s[_MEAN]
    if width == _H:
        if ts - s[_FIRST] >= p[L.P_ALLOC]:
            for i in range(_H, _H + 4 * _BINS):
                s[i] = 0.0
            width = float(_H + 4 * _BINS)
        else:
            if normal:
                s[_MEAN] += a * rt
            return False, width
    b = season_bin(ts)
    mean_i = _H + b
    count_i = _H + 2 * _BINS + b
    switched = False
    ok, predicted = _predict(s, b)
    if ok:
        rs = x - predicted
        s[_VSEA] += a * (rs * rs - s[_VSEA])
        s[_VTOT] += a * (rt * rt - s[_VTOT])
        s[_NSEA] += 1.0
        if (
            s[_MODE] <= 0.0
            and s[_NSEA] >= p[L.P_MINP]
            and ts - s[_FIRST] >= p[L.P_EST]
            and s[_VSEA] <= p[L.P_EXPL] * s[_VTOT]
        ):
            s[_MODE] = 1.0
            switched = True
    if normal or s[_MODE] <= 0.0:
        s[_MEAN] += a * rt
        n = s[count_i] + 1.0
        s[count_i] = n
        rate = 1.0 / n if 1.0 / n > p[L.P_BALPHA] else p[L.P_BALPHA]
        s[mean_i] += rate * (x - s[mean_i])
    return switched, width


# --- calibration -------------------------------------------------------------------------------
@njit(cache=True)
def tail_nines(z: float) -> float:
    if z < 30.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    zz = z * z
    log_q = -0.5 * zz - math.log(z) - _HALF_LOG_2PI + math.log1p(-1.0 / zz + 3.0 / (zz * zz))
    return -log_q / _LOG10


@njit(cache=True)
def calib_score(d: np.ndarray, evidence: float, p: np.ndarray) -> float:
    if d[L.D_C2] < p[L.P_CWARM]:
        z = 0.0
    else:
        v = d[L.D_C1] if d[L.D_C1] > p[L.P_CVF] else p[L.P_CVF]
        z = (math.log1p(evidence) - d[L.D_C0]) / math.sqrt(v)
    nines = tail_nines(z) if z > 0.0 else 0.0
    return nines / (nines + p[L.P_CL0]) if nines > 0.0 else 0.0


@njit(cache=True)
def calib_learn(d: np.ndarray, evidence: float, p: np.ndarray) -> None:
    y = math.log1p(evidence)
    if d[L.D_C2] >= p[L.P_CWARM]:
        cap = d[L.D_C0] + p[L.P_CWIN] * math.sqrt(d[L.D_C1])
        y = y if y < cap else cap
    n = d[L.D_C2] + 1.0
    d[L.D_C2] = n
    a = 1.0 / n if 1.0 / n > p[L.P_CALPHA] else p[L.P_CALPHA]
    dd = y - d[L.D_C0]
    d[L.D_C0] += a * dd
    d[L.D_C1] = (1.0 - a) * (d[L.D_C1] + a * dd * dd)


# --- threshold and alerts ---------------------------------------------------------------------
@njit(cache=True)
def threshold_learn(h: np.ndarray, score: float, n: float, p: np.ndarray) -> None:
    """`AdaptiveThreshold.learn_one` (the score is already known finite in [0, 1])."""
    bins = int(p[L.P_BINS])
    if not 0.0 <= score < 1.0:
        score = 0.0 if score < 0.0 else 1.0 - 1e-12
    b = int(score * bins)
    h[b if b < bins else bins - 1] += 1.0
    if int(n) % int(p[L.P_EVERY]) == 0:
        keep = p[L.P_KEEP]
        total = 0.0
        for i in range(bins):
            h[i] *= keep
            total += h[i]
        if total < p[L.P_MINC]:
            h[bins] = p[L.P_FLOOR]
            return
        target = p[L.P_Q] * total
        acc = 0.0
        q = 1.0
        for i in range(bins):
            acc += h[i]
            if acc >= target:
                q = (i + 1) / bins
                break
        h[bins] = min(p[L.P_CEIL], max(p[L.P_FLOOR], q + p[L.P_MARGIN]))


@njit(cache=True)
def severity(score: float, threshold: float, p: np.ndarray) -> float:
    """`severity_of` as a rank: 0 info, 1 warning, 2 critical."""
    room = 1.0 - threshold
    excess = (score - threshold) / room if room > 0.0 else 1.0
    if excess >= p[L.P_CRIT]:
        return 2.0
    if excess >= p[L.P_WARN]:
        return 1.0
    return 0.0
