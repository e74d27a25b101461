"""A per-metric time-of-day profile, learned online, so a normal daily cycle is not an anomaly.

Real sensors repeat every day (a building's power steps up at 09:00, traffic peaks at 13:00,
a disk fills until its 02:00 cleanup) and often differ on weekends. Before this profile the
detectors saw only a fast and a slow baseline in readings, so every 09:00 step alerted, and at
hourly sampling a slow baseline of 300 readings (12 days) made the daily swing its noise and
hid real anomalies inside it (corpus: `daily-step-15min`, `weekly-1h`, `hourly-temp-1h`,
`disk-sawtooth-1h` were never detected).

The profile: 48 half-hour bins of the UTC day, kept separately for weekdays and weekends (96
bins), each an exponentially weighted mean of the readings that fell in it (`1/count` at
first, then `bin_alpha`: about a week of memory per bin). It is consulted only once it is
*established*: the metric has been seen for `establish_s` of event time (3 days), and the
residual against the profile has at most `explain` (half) the variance of the residual
against a plain long-term mean, measured side by side on the same readings. From then on the
detectors score and learn `x - profile(t)` (`Scorer`), so a daily step is expected; the switch
happens once per metric, and the detector's baselines are re-based on it (`ResidualDetector.
rebase`). A metric that never shows a cycle never switches and costs 8 floats.

State is a flat list of floats owned by the device (serialized with it): a header of 8, and
the 192 bin floats (means, counts) appended only once the metric has been seen for a day, so
fast-sampled devices that live for minutes never carry them. Once the profile is established,
readings the detectors hold back as anomalous are not learned into it (`learn(...,
normal=False)` only moves the switch statistics), so an incident does not become tomorrow's
expectation; before that every reading is learned (the detectors, still on the raw value,
hold the normal daily step itself as an anomaly).

>>> profile = SeasonalProfile()
>>> s = profile.new_state(0.0, 20.0)
>>> day = 86400.0
>>> for i in range(5 * 48):  # 5 days, every 30 min: 100 from 09:00 to 18:00 UTC, else 20
...     t = i * 1800.0
...     hour = (t % day) / 3600.0
...     _ = profile.learn(s, t, 100.0 if 9 <= hour < 18 else 20.0)
>>> profile.established(s)
True
>>> profile.expected(s, 5 * day + 10 * 3600.0), profile.expected(s, 5 * day + 3 * 3600.0)
(100.0, 20.0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SeasonalConfig", "SeasonalProfile"]

DAY = 86400.0
_BINS = 48  # half-hour bins per day
_HALF = DAY / _BINS
# header layout
_MODE, _FIRST, _LAST, _MEAN, _VTOT, _VSEA, _NSEA, _SPARE = range(8)
_HEADER = 8
_WIDTH = _HEADER + 4 * _BINS  # + means (2 x 48) + counts (2 x 48)


@dataclass(frozen=True, slots=True)
class SeasonalConfig:
    establish_s: float = 3 * DAY  # seen this long before the profile may be used
    allocate_s: float = DAY  # bins are allocated after this much history
    explain: float = 0.5  # profile residual variance <= explain x plain residual variance
    bin_alpha: float = 1.0 / 7.0  # per-bin EW rate once a bin has 1/bin_alpha readings
    stats_tau_s: float = 3 * DAY  # time constant of the side-by-side variance comparison
    min_pairs: float = 100.0  # profile residuals needed before deciding


def _bin(ts: float) -> int:
    """Half-hour bin of the UTC day, weekend bins after the 48 weekday ones."""
    days = int(ts // DAY)
    weekend = (days + 3) % 7 >= 5  # 1970-01-01 was a Thursday (Monday = 0)
    return int((ts - days * DAY) // _HALF) + (_BINS if weekend else 0)


def _predict(s: list[float], b: int) -> float | None:
    """Bin `b`'s mean; for a bin not seen yet (a first weekend, irregular sampling) the same
    time on the other kind of day; None when neither was seen."""
    if s[_HEADER + 2 * _BINS + b] > 0.0:
        return s[_HEADER + b]
    other = b + _BINS if b < _BINS else b - _BINS
    if s[_HEADER + 2 * _BINS + other] > 0.0:
        return s[_HEADER + other]
    return None


class SeasonalProfile:
    """Time-of-day profile per metric; its state is a list of floats (module docstring)."""

    def __init__(self, config: SeasonalConfig | None = None) -> None:
        self.config = config or SeasonalConfig()

    @staticmethod
    def new_state(ts: float, x: float) -> list[float]:
        return [0.0, ts, ts, x, 0.0, 0.0, 0.0, 0.0]

    @staticmethod
    def established(s: list[float]) -> bool:
        return s[_MODE] > 0.0

    @staticmethod
    def residual_var(s: list[float]) -> float:
        """Variance of the residuals against the profile (what the detectors re-base on)."""
        return s[_VSEA]

    @staticmethod
    def expected(s: list[float], ts: float) -> float:
        """The profile's value at `ts` once established (0.0 before: nothing subtracted)."""
        if s[_MODE] <= 0.0:
            return 0.0
        value = _predict(s, _bin(ts))
        return s[_MEAN] if value is None else value

    def learn(self, s: list[float], ts: float, x: float, *, normal: bool = True) -> bool:
        """Learn one in-order reading; returns True when this reading established the profile
        (the caller re-bases the detectors on `x - expected`)."""
        c = self.config
        dt = ts - s[_LAST]
        if dt < 0.0:
            return False  # out of order inside the grace: the bins are per time, skip it
        s[_LAST] = ts
        # the statistics' EW rate for this reading's spacing, at least 1e-3 (fast sensors)
        a = dt / c.stats_tau_s
        a = 1.0 if a > 1.0 else (a if a > 1e-3 else 1e-3)
        rt = x - s[_MEAN]
        if len(s) == _HEADER:
            if ts - s[_FIRST] >= c.allocate_s:
                s.extend([0.0] * (4 * _BINS))
            else:
                if normal:
                    s[_MEAN] += a * rt
                return False
        b = _bin(ts)
        mean_i, count_i = _HEADER + b, _HEADER + 2 * _BINS + b
        switched = False
        predicted = _predict(s, b)
        if predicted is not None:  # compare both residuals on readings the bins could predict
            rs = x - predicted
            s[_VSEA] += a * (rs * rs - s[_VSEA])
            s[_VTOT] += a * (rt * rt - s[_VTOT])
            s[_NSEA] += 1.0
            if (
                s[_MODE] <= 0.0
                and s[_NSEA] >= c.min_pairs
                and ts - s[_FIRST] >= c.establish_s
                and s[_VSEA] <= c.explain * s[_VTOT]
            ):
                s[_MODE] = 1.0
                switched = True
        if normal or s[_MODE] <= 0.0:
            # before the profile is in use the detectors hold the daily step itself as an
            # anomaly; skipping those readings kept the 09:00 bins empty for ever
            s[_MEAN] += a * rt
            n = s[count_i] + 1.0
            s[count_i] = n
            rate = 1.0 / n if 1.0 / n > c.bin_alpha else c.bin_alpha
            s[mean_i] += rate * (x - s[mean_i])
        return switched
