"""The regimes of the evaluation corpus (`sim.corpus`): one small generator per regime.

Each generator takes its own seeded `numpy.random.Generator` and returns a `Draft`: event
timestamps (whole epoch seconds, non-decreasing; repeated where a regime says so), values,
and the injected anomalies as `(kind, first_index, last_index)`. An anomaly that persists (a
level shift, a metric stuck until the end) has `last_index` at its onset or at the end of the
series. Onsets sit at 45-90% of a series, after the 15% probation and after several periods of
any cycle, so a detector that learns seasonality has had the chance to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["REGIMES", "Draft"]

DAY = 86_400
START = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday


@dataclass(slots=True)
class Draft:
    """One generated series before labelling."""

    metric: str
    tags: tuple[str, ...]
    ts: np.ndarray  # int64 epoch seconds
    values: np.ndarray
    anomalies: list[tuple[str, int, int]] = field(default_factory=list)
    decimals: int = 2


def _grid(step: int, n: int) -> np.ndarray:
    return START + step * np.arange(n, dtype=np.int64)


def _daily(ts: np.ndarray, peak_hour: float) -> np.ndarray:
    """Cosine time-of-day profile in [-1, 1], highest at `peak_hour` UTC."""
    hours = (ts % DAY) / 3600.0
    return np.cos(2.0 * np.pi * (hours - peak_hour) / 24.0)


def _weekend(ts: np.ndarray) -> np.ndarray:
    return (ts // DAY + 3) % 7 >= 5  # 1970-01-01 was a Thursday (Monday = 0)


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    noise = rng.normal(0.0, sigma, n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = phi * acc + noise[i]
        out[i] = acc
    return out


def _at(rng: np.random.Generator, n: int, frac: float) -> int:
    return int(n * (frac + rng.uniform(-0.03, 0.03)))


def _at_hour(ts: np.ndarray, index: int, hour: float) -> int:
    """First index at or after `hour` UTC on the day of `ts[index]`."""
    target = ts[index] // DAY * DAY + int(hour * 3600)
    return int(np.searchsorted(ts, target))


def spikes_1s(rng: np.random.Generator) -> Draft:
    n = 3600
    x = 50 + rng.uniform(-5, 5) + _ar1(rng, n, 0.7, 0.5)  # stationary sd 0.7
    a, b = _at(rng, n, 0.45), _at(rng, n, 0.8)
    x[a] += 5.6 * rng.choice([-1.0, 1.0])
    x[b : b + 3] -= 7.0
    anomalies = [("spike", a, a), ("spike", b, b + 2)]
    return Draft("line_kpa", ("sampling:1s", "spike"), _grid(1, n), x, anomalies)


def shift_1s(rng: np.random.Generator) -> Draft:
    n = 3000
    x = 12 + _ar1(rng, n, 0.5, 0.2)
    a = _at(rng, n, 0.55)
    x[a:] += 1.4 * rng.choice([-1.0, 1.0])  # 6 sd, persists: the new normal
    return Draft(
        "current_a", ("sampling:1s", "level-shift"), _grid(1, n), x, [("level_shift", a, a)]
    )


def drift_10s(rng: np.random.Generator) -> Draft:
    n = 2880
    x = 60 + _ar1(rng, n, 0.9, 0.1)  # sd 0.23
    a, length = _at(rng, n, 0.5), int(0.15 * n)
    ramp = np.clip(np.arange(n) - a, 0, length) * (6 * 0.23 / (0.05 * n))  # 6 sd at mid-window
    return Draft(
        "bearing_temp_c",
        ("sampling:10s", "drift"),
        _grid(10, n),
        x + ramp,
        [("drift", a, a + length)],
    )


def noise_10s(rng: np.random.Generator) -> Draft:
    n = 2880
    sd = np.full(n, 0.2)
    a, length = _at(rng, n, 0.5), int(0.06 * n)
    sd[a : a + length] *= 5
    x = np.clip(3.0 + rng.normal(0, 1, n) * sd, 0, None)
    tags = ("sampling:10s", "noise-change")
    return Draft("vibration_mm_s", tags, _grid(10, n), x, [("noise_change", a, a + length - 1)])


def daily_5min(rng: np.random.Generator) -> Draft:
    n, ts = 12 * 288, _grid(300, 12 * 288)
    x = 35 + 20 * _daily(ts, 15 + rng.uniform(-1, 1)) + rng.normal(0, 3, n)
    a = _at_hour(ts, _at(rng, n, 0.5), 3)
    x[a : a + 3] = 90
    b = _at_hour(ts, _at(rng, n, 0.8), 11)
    x[b : b + 24] += 30
    anomalies = [("spike", a, a + 2), ("plateau", b, b + 23)]
    return Draft("cpu_pct", ("sampling:5min", "daily", "spike"), ts, np.clip(x, 0, 100), anomalies)


def daily_outage_5min(rng: np.random.Generator) -> Draft:
    n, ts = 12 * 288, _grid(300, 12 * 288)
    x = 200 * (1 + 0.8 * _daily(ts, 20)) + rng.normal(0, 10, n)
    a = _at_hour(ts, _at(rng, n, 0.7), 10)
    x[a : a + 96] *= 0.1
    tags = ("sampling:5min", "daily", "dip")
    return Draft("active_users", tags, ts, np.clip(x, 0, None), [("dip", a, a + 95)], 0)


def weekly_1h(rng: np.random.Generator) -> Draft:
    n, ts = 8 * 168, _grid(3600, 8 * 168)
    base = 400 * (1 + 0.5 * _daily(ts, 13)) * np.where(_weekend(ts), 0.4, 1.0)
    x = base * (1 + rng.normal(0, 0.05, n))
    a = _at_hour(ts, 5 * 168 + 2 * 24 + int(rng.integers(0, 3)) * 24, 0)  # a Wed-Fri of week 6
    x[a : a + 24] *= 0.4  # a weekday that looks like a Sunday
    b = _at(rng, n, 0.88)
    x[b] *= 2.2
    anomalies = [("pattern_change", a, a + 23), ("spike", b, b)]
    return Draft("orders_per_h", ("sampling:1h", "daily", "weekly"), ts, x, anomalies, 0)


def daily_step_15min(rng: np.random.Generator) -> Draft:
    n, ts = 14 * 96, _grid(900, 14 * 96)
    hours = (ts % DAY) / 3600.0
    x = 20 + 40 * ((hours >= 9) & (hours < 18)) + rng.normal(0, 0.5, n)
    a = _at_hour(ts, _at(rng, n, 0.55), 3)
    x[a : a + 8] += 40  # the step at the wrong hour
    b = _at_hour(ts, _at(rng, n, 0.82), 9)
    x[b : b + 12] -= 40  # no 09:00 step until noon
    anomalies = [("unexpected_step", a, a + 7), ("missing_step", b, b + 11)]
    return Draft("hvac_kw", ("sampling:15min", "daily-step"), ts, x, anomalies, 1)


def poisson_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    lam = np.full(n, 4.0)
    a, b = _at(rng, n, 0.5), _at(rng, n, 0.8)
    lam[a : a + 20] = 20
    lam[b : b + 90] = 0
    anomalies = [("burst", a, a + 19), ("outage", b, b + 89)]
    x = rng.poisson(lam).astype(float)
    return Draft("errors_per_min", ("sampling:1min", "counts"), _grid(60, n), x, anomalies, 0)


def negbin_5min(rng: np.random.Generator) -> Draft:
    n, ts = 12 * 288, _grid(300, 12 * 288)
    mu = 50 * (1 + 0.6 * _daily(ts, 21))
    a = _at(rng, n, 0.55)
    mu[a : a + 12] *= 6
    r = 3.0  # dispersion: variance mu + mu^2/3, i.e. bursty
    x = rng.negative_binomial(r, r / (r + mu)).astype(float)
    tags = ("sampling:5min", "counts", "bursty", "daily")
    return Draft("mentions", tags, ts, x, [("burst", a, a + 11)], 0)


def sparse_counts_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    lam = np.full(n, 0.08)  # a quiet counter: exact zeros for tens of minutes
    a = _at(rng, n, 0.6)
    lam[a : a + 30] = 6
    x = rng.poisson(lam).astype(float)
    tags = ("sampling:1min", "counts", "flat")
    return Draft("retries", tags, _grid(60, n), x, [("burst", a, a + 29)], 0)


def quantized_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    x = 21 + _ar1(rng, n, 0.995, 0.05) + rng.normal(0, 0.2, n)
    a, b = _at(rng, n, 0.5), _at(rng, n, 0.82)
    x[a:] += 3
    x[b] += 6
    x = np.round(x * 2) / 2  # a 0.5 degree sensor
    anomalies = [("level_shift", a, a), ("spike", b, b)]
    tags = ("sampling:1min", "quantized", "level-shift")
    return Draft("room_temp_c", tags, _grid(60, n), x, anomalies, 1)


def quantized_rpm_30s(rng: np.random.Generator) -> Draft:
    n = 2880
    x = 1500 + 100 * np.round(rng.normal(0, 0.6, n))
    a = _at(rng, n, 0.6)
    x[a : a + 20] = 600
    tags = ("sampling:30s", "quantized")
    return Draft("fan_rpm", tags, _grid(30, n), x, [("dip", a, a + 19)], 0)


def setpoint_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    a = _at(rng, n, 0.6)
    changes = np.cumsum(rng.integers(300, 600, 10))
    changes = changes[(changes < n) & (np.abs(changes - a) > 0.06 * n)]
    x = np.full(n, 50.0)
    for c in changes:  # ordinary setpoint moves after long exactly-flat stretches
        x[c:] += rng.choice([-1.0, 1.0]) * rng.uniform(1, 4)
    x[a : a + 20] += 5 * np.where(np.arange(20) % 2 == 0, 1.0, -1.0)
    tags = ("sampling:1min", "flat")
    return Draft("valve_pct", tags, _grid(60, n), x, [("oscillation", a, a + 19)], 1)


def stuck_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    x = 45 + _ar1(rng, n, 0.98, 0.3) + rng.normal(0, 0.2, n)
    a = _at(rng, n, 0.6)
    x = np.round(x, 1)
    x[a:] = x[a - 1]  # used to vary, now repeats its last value to the end
    tags = ("sampling:1min", "stuck")
    return Draft("rh_pct", tags, _grid(60, n), x, [("stuck", a, n - 1)], 1)


def stuck_day_5min(rng: np.random.Generator) -> Draft:
    n, ts = 12 * 288, _grid(300, 12 * 288)
    x = np.round(80 + 15 * _daily(ts, 7) + rng.normal(0, 1.5, n), 2)
    a = _at(rng, n, 0.65)
    x[a : a + 288] = x[a - 1]
    tags = ("sampling:5min", "daily", "stuck")
    return Draft("flow_lps", tags, ts, x, [("stuck", a, a + 287)])


def irregular_gaps(rng: np.random.Generator) -> Draft:
    n = 3000
    steps = np.floor(rng.exponential(20.0, n)).astype(np.int64)  # ~5% zero: repeated ts
    for lo, hi in ((0.2, 0.4), (0.6, 0.7), (0.9, 0.95)):
        steps[int(rng.uniform(lo, hi) * n)] += int(rng.integers(1800, 7200))  # outages
    ts = START + np.cumsum(steps)
    x = 120 + _ar1(rng, n, 0.95, 0.5)
    a, b = _at(rng, n, 0.5), _at(rng, n, 0.8)
    x[a] -= 15
    x[b:] += 8
    tags = ("irregular", "gaps", "repeated-ts", "spike", "level-shift")
    return Draft("tank_level_cm", tags, ts, x, [("spike", a, a), ("level_shift", b, b)], 1)


def irregular_daily_10min(rng: np.random.Generator) -> Draft:
    ts = _grid(600, 12 * 144) + rng.integers(-180, 181, 12 * 144)
    keep = rng.random(ts.size) > 0.05
    for lo in (0.3, 0.75):  # two outages of 3-6 h
        g = int(lo * ts.size)
        keep[g : g + int(rng.integers(18, 36))] = False
    ts = np.sort(ts[keep])
    n = ts.size
    x = 5 + 3 * _daily(ts, 12) + rng.normal(0, 0.3, n)
    a = _at_hour(ts, _at(rng, n, 0.6), 2)
    end = int(np.searchsorted(ts, ts[a] + 3 * 3600))
    x[a:end] = 8 + rng.normal(0, 0.3, end - a)  # daytime load at night
    tags = ("irregular", "gaps", "daily")
    return Draft("power_kw", tags, ts, x, [("plateau", a, end - 1)])


def hourly_temp_1h(rng: np.random.Generator) -> Draft:
    n, ts = 1440, _grid(3600, 1440)
    x = 10 + 6 * _daily(ts, 15) + _ar1(rng, n, 0.97, 0.4)
    a, b = _at(rng, n, 0.5), _at(rng, n, 0.82)
    x += np.clip(np.arange(n) - a, 0, 72) * 0.15  # sensor drift for 3 days, then an offset
    x[b] += 15
    tags = ("sampling:1h", "daily", "drift")
    return Draft("outdoor_temp_c", tags, ts, x, [("drift", a, a + 72), ("spike", b, b)], 1)


def latency_1min(rng: np.random.Generator) -> Draft:
    n = 2880
    x = np.exp(rng.normal(np.log(40), 0.25, n))
    x[rng.random(n) < 0.01] *= 3  # ordinary heavy tail
    a = _at(rng, n, 0.6)
    x[a : a + 45] *= 2.5
    tags = ("sampling:1min", "heavy-tail")
    return Draft("latency_ms", tags, _grid(60, n), x, [("plateau", a, a + 44)], 1)


def machine_temp_5min(rng: np.random.Generator) -> Draft:
    n = 12 * 288
    x = 85 + _ar1(rng, n, 0.995, 0.15)
    a, b = _at(rng, n, 0.55), _at(rng, n, 0.85)
    dip = np.concatenate([np.linspace(0, -15, 24), np.linspace(-15, 0, 48)])
    x[a : a + dip.size] += dip
    x[b : b + 72] += rng.normal(0, 2.0, 72)  # noise grows for 6 h
    anomalies = [("dip", a, a + dip.size - 1), ("noise_change", b, b + 71)]
    tags = ("sampling:5min", "dip", "noise-change")
    return Draft("machine_temp_c", tags, _grid(300, n), x, anomalies)


def disk_sawtooth_1h(rng: np.random.Generator) -> Draft:
    n, ts = 40 * 24, _grid(3600, 40 * 24)
    since = ((ts % DAY) // 3600 - 2) % 24  # hours since the daily 02:00 cleanup
    a = _at_hour(ts, _at(rng, n, 0.55), 2)
    since[a : a + 24] += 24  # one cleanup does not run
    rate = np.full(n, 0.5)
    b = _at(rng, n, 0.82)
    x = 30 + since * rate + rng.normal(0, 0.1, n)
    x[b : b + 6] += np.cumsum(np.full(6, 2.0))  # fills 5x faster for 6 h
    anomalies = [("missing_step", a, a + 23), ("rate_change", b, b + 5)]
    return Draft("disk_used_pct", ("sampling:1h", "daily-step"), ts, x, anomalies)


REGIMES: dict[str, Callable[[np.random.Generator], Draft]] = {
    "spikes-1s": spikes_1s,
    "shift-1s": shift_1s,
    "drift-10s": drift_10s,
    "noise-10s": noise_10s,
    "daily-5min": daily_5min,
    "daily-outage-5min": daily_outage_5min,
    "weekly-1h": weekly_1h,
    "daily-step-15min": daily_step_15min,
    "poisson-1min": poisson_1min,
    "negbin-5min": negbin_5min,
    "sparse-counts-1min": sparse_counts_1min,
    "quantized-1min": quantized_1min,
    "quantized-rpm-30s": quantized_rpm_30s,
    "setpoint-1min": setpoint_1min,
    "stuck-1min": stuck_1min,
    "stuck-day-5min": stuck_day_5min,
    "irregular-gaps": irregular_gaps,
    "irregular-daily-10min": irregular_daily_10min,
    "hourly-temp-1h": hourly_temp_1h,
    "latency-1min": latency_1min,
    "machine-temp-5min": machine_temp_5min,
    "disk-sawtooth-1h": disk_sawtooth_1h,
}
