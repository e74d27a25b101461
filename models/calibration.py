"""Calibrated anomaly scores: the same number means the same rarity on every device.

The detectors' raw evidence (the largest weighted |z| of a reading's metrics) is not
comparable across devices: after a flat stretch a variance floor turns the next ordinary
change into a |z| of thousands, and bursty counts produce large |z| every hour. One fleet-wide
threshold on it scored 2.9 (window-based benchmark, holdout corpus): hundreds of readings tied
at a score of 1.0, all false alarms.

So each device keeps the distribution of its own raw evidence ("anomaly likelihood", Ahmad et
al. 2017, Numenta): an exponentially weighted mean and variance of `log1p(evidence)`. A
reading's calibrated z is its `log1p(evidence)` against that distribution, its rarity the
normal tail `Q(z)`, and the score `L / (L + L0)` with `L = -log10 Q(z)` (the number of nines):
strictly increasing in the evidence, so it never saturates into ties (`L` is exact in
logarithms far beyond where `1 - Q(z)` rounds to 1.0), and `0.5` means one reading in `10**L0`.
The distribution always learns, anomalous readings included: a device whose normal becomes
noisier is re-calibrated within a half-life instead of alarming forever (a guard that skipped
flagged readings scored 0-50 instead of 60 on the corpus: a regime change then never ends).

State per device: `[mean, variance, count]`.

>>> cal = ScoreCalibrator()
>>> s = cal.new_state()
>>> for i in range(500):
...     _ = cal.learn(s, 1.0 + 0.5 * ((i * 7919) % 13) / 13)
>>> round(cal.score(s, 1.2), 3) < 0.2 < 0.5 < round(cal.score(s, 30.0), 3) < cal.score(s, 1e6) < 1.0
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CalibrationConfig", "ScoreCalibrator", "tail_nines"]

_LOG10 = math.log(10.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    half_life: float = 2000.0  # readings: the device's recent distribution of evidence
    warmup: int = 30  # readings of evidence before a score other than 0 is given
    var_floor: float = 1e-4  # of log1p(evidence): a constant evidence still has a spread
    nines_at_half: float = 4.0  # L0: a score of 0.5 is a 1-in-10**L0 reading
    winsor: float = 1.5  # a reading moves the distribution as if at most this many sd high


def tail_nines(z: float) -> float:
    """`-log10 Q(z)` for the standard normal upper tail, accurate for any finite `z`."""
    if z < 30.0:  # erfc is exact to ~1e-198 here; the series' error is ~1e-7 of a nine
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # asymptotic series: log Q(z) = -z^2/2 - log z - log sqrt(2 pi) + log(1 - 1/z^2 + 3/z^4)
    zz = z * z
    log_q = -0.5 * zz - math.log(z) - _HALF_LOG_2PI + math.log1p(-1.0 / zz + 3.0 / (zz * zz))
    return -log_q / _LOG10


class ScoreCalibrator:
    """Per-device calibration of raw evidence into a score in [0, 1) (module docstring)."""

    def __init__(self, config: CalibrationConfig | None = None) -> None:
        self.config = config or CalibrationConfig()
        self._alpha = 1.0 - 2.0 ** (-1.0 / self.config.half_life)

    @staticmethod
    def new_state() -> list[float]:
        return [0.0, 1.0, 0.0]

    def z(self, s: list[float], evidence: float) -> float:
        """The evidence's calibrated z against the device's distribution (0 while warming up)."""
        if s[2] < self.config.warmup:
            return 0.0
        v = s[1] if s[1] > self.config.var_floor else self.config.var_floor
        return (math.log1p(evidence) - s[0]) / math.sqrt(v)

    def score(self, s: list[float], evidence: float) -> float:
        z = self.z(s, evidence)
        nines = tail_nines(z) if z > 0.0 else 0.0
        return nines / (nines + self.config.nines_at_half) if nines > 0.0 else 0.0

    def learn(self, s: list[float], evidence: float) -> None:
        y = math.log1p(evidence)
        if s[2] >= self.config.warmup:
            cap = s[0] + self.config.winsor * math.sqrt(s[1])
            y = y if y < cap else cap
        n = s[2] + 1.0
        s[2] = n
        a = 1.0 / n if 1.0 / n > self._alpha else self._alpha
        d = y - s[0]
        s[0] += a * d
        s[1] = (1.0 - a) * (s[1] + a * d * d)
