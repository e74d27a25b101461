"""Online anomaly detectors that learn as they score, and never learn what they flag.

`ResidualDetector` keeps, per device and metric, a small list of floats (no river objects, so
per-device state serializes in microseconds): a fast and a slow exponentially weighted
baseline with their residual variances, a short-term energy of standardized residuals (noise
bursts), and the length of the current run of identical values with the learned chance of a
repeat (stuck sensors). Each reading yields per-metric *evidence* in z units, the largest of:

- `fast`:  |x - mu_fast| / sigma_fast — spikes and level shifts, right away;
- `slow`:  |x - mu_slow| / sigma_slow — drifts and degradations that a fast baseline follows;
- `noise`: the short-term RMS of fast residuals, mapped to the z with the same tail chance;
- `stuck`: a run of r identical values has chance p0^r; mapped to the z with that chance.

The guard: a metric whose evidence is over `guard_z` does not update its baselines, so a
fault does not become the new normal; a metric held by the guard longer than `relearn_after`
readings starts learning again (a genuine change of regime is accepted eventually).

`AdaptiveThreshold` is the per-device decision rule: a decayed histogram of the device's own
scores on normal readings, threshold = that quantile + margin, clamped to [floor, ceiling].

Bounded arithmetic: inputs are within +-`VALUE_LIMIT` (1e100; the feature extractor clamps),
so means stay within it and variances within its square, and no square, product or power
here overflows (20 readings of 1e308 made the variances inf, then NaN, and
`int(score * bins)` raised). `score_one` refuses (`DetectorStateError`) an input or a
metric state outside those bounds, e.g. a state poisoned before this check existed, instead
of scoring NaN as 0 forever; the pipeline dead-letters that device's readings and resets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "EVIDENCE",
    "AdaptiveThreshold",
    "DetectorConfig",
    "DetectorStateError",
    "ResidualDetector",
]

EVIDENCE = ("fast", "slow", "noise", "stuck")

# per-metric state layout
_MF, _VF, _MS, _VS, _N, _LAST, _RUN, _P0, _EN, _HELD, _RES, _SINCE = range(12)
WIDTH = 12  # floats per metric (DeviceState's codec: states written before _RES had 10)
_SQRT2 = math.sqrt(2.0)
VALUE_LIMIT = 1e100  # |input| bound (models.features clamps to it); means stay within it
_VAR_LIMIT = 4.0 * VALUE_LIMIT * VALUE_LIMIT  # variances stay within (2 * VALUE_LIMIT)^2


class DetectorStateError(ValueError):
    """An input or a per-metric detector state outside the bounds the arithmetic needs."""


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Rates are per reading (the detector follows the reading sequence, features event time)."""

    alpha_fast: float = 0.2
    alpha_slow: float = 1.0 / 300.0
    alpha_var: float = 1.0 / 200.0
    alpha_var_slow: float = 1.0 / 500.0
    winsor_mean: float = 2.0  # slow mean moves by at most this many sigma per reading
    winsor_var: float = 2.5  # squared residuals capped at (this sigma)^2, bias-corrected
    alpha_energy: float = 0.3
    alpha_p0: float = 1.0 / 500.0
    warmup: int = 60
    slow_warmup: int = 300  # the slow baseline needs longer: low-frequency wander
    guard_z: float = 4.0
    # a held change becomes the new normal after `relearn_after` held readings or
    # `relearn_after_s` of event time, whichever comes first (1800 readings, the old rule,
    # was 75 days at hourly sampling and kept level shifts and drifts scoring for ever after)
    relearn_after: int = 120
    relearn_after_s: float = 4 * 3600.0
    recentre_after: int = 10
    p0_floor: float = 0.01
    flat_p0: float = 0.99  # repeat chance learned when a held run of repeats is relearned
    var_floor_rel: float = 1e-10
    # sd floor in units of the metric's resolution (its smallest change seen): after an
    # exactly flat stretch the variances fall to ~0, and a one-step setpoint move scored a
    # |z| in the thousands (corpus `setpoint-1min`); now it scores steps / (this x resolution)
    resolution_floor: float = 0.5
    # evidence weights (fast, slow, noise, stuck): equal normal-data tails, measured on the
    # tuning seeds (99.99th percentiles ~4.3, ~3.8, ~5.5, ~3.6 before weighting)
    weights: tuple[float, float, float, float] = (1.0, 1.2, 0.85, 1.2)


def winsor_bias(c: float) -> float:
    """E[min(z^2, c^2)] for a standard normal z: divides capped squared residuals."""
    tail = math.erfc(c / _SQRT2)
    density = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    return (1.0 - tail) - 2.0 * c * density + c * c * tail


def _tail_z(log_p: float) -> float:
    """The |z| whose two-sided normal tail has log-probability `log_p` (approximation)."""
    if log_p >= -0.01:
        return 0.0
    # tail ~ exp(-z²/2) / (z sqrt(pi/2)); invert with two fixed-point steps
    z = math.sqrt(-2.0 * log_p)
    for _ in range(2):
        z = math.sqrt(max(0.0, -2.0 * (log_p + math.log(max(z, 1e-3) * 1.2533141373155))))
    return z


class ResidualDetector:
    """Per-metric residual detector; its state is a list of floats owned by the device.

    Usually one per `Scorer`: `new_metric_state(x)`, then `score_one(state, x)` returns the
    evidence tuple, and `learn_one(state, x, evidence)` updates unless the guard holds.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        c = self.config
        self._af = c.alpha_fast
        self._as = c.alpha_slow
        self._av = c.alpha_var
        self._ae = c.alpha_energy
        self._ap = c.alpha_p0
        self._avs = c.alpha_var_slow
        self._slow_warm = max(c.slow_warmup, c.warmup)
        self._w = c.weights
        self._kf = winsor_bias(3.0)
        self._ks = winsor_bias(c.winsor_var)

    def new_metric_state(self, x: float) -> list[float]:
        return [x, 0.0, x, 0.0, 0.0, x, 0.0, 0.05, 1.0, 0.0, 0.0, 0.0]

    def score_one(
        self, s: list[float], x: float, raw: float | None = None
    ) -> tuple[float, float, float, float]:
        """Evidence (fast, slow, noise, stuck) in z units; (0, 0, 0, 0) while warming up.

        `x` is what the baselines model (the value, or the value less its seasonal profile);
        `raw` the reading's value as sent (default `x`), whose repeats are the stuck evidence.
        Raises `DetectorStateError` for an input or state outside the bounds (module doc)."""
        ms = s[_MS]
        if not (
            -VALUE_LIMIT <= x <= VALUE_LIMIT
            and -VALUE_LIMIT <= ms <= VALUE_LIMIT
            and -VALUE_LIMIT <= s[_MF] <= VALUE_LIMIT
            and 0.0 <= s[_VF] <= _VAR_LIMIT
            and 0.0 <= s[_VS] <= _VAR_LIMIT
            and 0.0 <= s[_EN] <= 100.0  # learn_one caps each energy term at 100
            and s[_N] >= 0.0
        ):  # NaN fails every comparison
            raise DetectorStateError(
                f"input {x!r} or detector state (means {s[_MF]!r}, {ms!r}; variances "
                f"{s[_VF]!r}, {s[_VS]!r}) outside +-{VALUE_LIMIT:g}"
            )
        if s[_N] < self.config.warmup:
            return 0.0, 0.0, 0.0, 0.0
        m = 1.0 + abs(ms)
        floor = self.config.var_floor_rel * m * m
        res = self.config.resolution_floor * s[_RES]
        if res * res > floor:
            floor = res * res
        vf = s[_VF] if s[_VF] > floor else floor
        vs = s[_VS] if s[_VS] > floor else floor
        w = self._w
        zs = w[1] * abs(x - s[_MS]) / math.sqrt(vs) if s[_N] >= self._slow_warm else 0.0
        if s[_HELD] < 0.0:  # restarted (repair): the fast side re-centres on this reading
            return 0.0, zs, 0.0, 0.0
        rf = x - s[_MF]
        zf = w[0] * abs(rf) / math.sqrt(vf)
        # short-term energy of standardized residuals, as if this one were included
        en = s[_EN] + self._ae * (rf * rf / vf - s[_EN])
        zn = w[2] * _energy_z(en, self._ae)
        run = s[_RUN] + 1.0 if (x if raw is None else raw) == s[_LAST] else 0.0
        p0 = s[_P0] if s[_P0] > self.config.p0_floor else self.config.p0_floor
        zst = w[3] * _tail_z(run * math.log(p0)) if run >= 2.0 else 0.0
        return zf, zs, zn, zst

    def learn_one(
        self,
        s: list[float],
        x: float,
        ev: tuple[float, float, float, float],
        raw: float | None = None,
        ts: float = 0.0,
    ) -> bool:
        """Update with `x`; baselines skip what the guard flags. Returns whether all learned.

        - short-term statistics (energy, run of repeats) always follow the data;
        - the fast mean always moves, by a residual clipped to `guard_z` sigma for the first
          `recentre_after` held readings (a spike barely moves it), then fully (it re-centres
          after a lasting change, which the slow baseline keeps flagging);
        - the fast variance, the slow mean and variance and the repeat chance skip readings
          whose evidence is over `guard_z`; after `relearn_after` held readings in a row the
          slow baseline restarts from the (re-centred) fast one: a lasting change of regime
          becomes the new normal.
        """
        c = self.config
        value = x if raw is None else raw
        repeat = value == s[_LAST]
        step = abs(value - s[_LAST])
        if step > 0.0 and (step < s[_RES] or s[_RES] == 0.0):
            s[_RES] = step  # the resolution: the smallest change the metric has shown
        s[_RUN] = s[_RUN] + 1.0 if repeat else 0.0
        s[_LAST] = value
        n = s[_N]
        if n < 2.0:
            s[_MF] = s[_MS] = x
            s[_N] = n + 1.0
            return True
        if s[_HELD] < 0.0:  # first reading after a restart
            s[_MF] = x
            s[_HELD] = 0.0
            return False
        warm = n >= c.warmup
        zf, zs, zn, zst = ev
        guard = c.guard_z
        rf = x - s[_MF]
        rs = x - s[_MS]
        vf = s[_VF]
        # energy of standardized fast residuals (each term capped so one spike fades quickly)
        if vf > 0.0:
            e = rf * rf / vf
            s[_EN] += self._ae * ((e if e < 100.0 else 100.0) - s[_EN])
        held = warm and (zf > guard or zs > guard or zn > guard or zst > guard)
        if held and s[_HELD] == 0.0:
            s[_SINCE] = ts
        if held and s[_HELD] < c.relearn_after and ts - s[_SINCE] < c.relearn_after_s:
            s[_HELD] += 1.0
            # the fast mean still moves, clipped at first, fully once the change has lasted
            if s[_HELD] > c.recentre_after:
                s[_MF] += self._af * rf
            else:
                lim = guard * math.sqrt(vf) if vf > 0.0 else abs(rf)
                s[_MF] += self._af * (rf if -lim <= rf <= lim else (lim if rf > 0 else -lim))
            return False
        if held:  # held for long enough (`relearn_after`, `_s`): the change is the new normal
            s[_MS] = s[_MF]
            s[_VS] = max(s[_VS], s[_VF])
            if repeat:  # a value that stopped varying, for that long: flat is now normal
                s[_P0] = max(s[_P0], c.flat_p0)
            s[_RUN] = 0.0
        s[_HELD] = 0.0
        s[_N] = n + 1.0
        vs = s[_VS]
        # robust (winsorized) updates once warm: values just under the guard cannot inflate
        # the variances or drag the slow mean fast (no "boiling frog" on slow ramps); during
        # warm-up plain and fast, so the first scores are calibrated
        if warm:
            r2 = rf * rf
            cap = 9.0 * vf
            s[_VF] += self._av * ((r2 if r2 < cap else cap) / self._kf - vf)
        else:
            s[_VF] += max(self._av, 1.0 / n) * (rf * rf - vf)
        if n >= self._slow_warm:
            r2 = rs * rs
            cap = c.winsor_var * c.winsor_var * vs
            s[_VS] += self._avs * ((r2 if r2 < cap else cap) / self._ks - vs)
            lim = c.winsor_mean * math.sqrt(vs)
            s[_MS] += self._as * (rs if -lim <= rs <= lim else (lim if rs > 0 else -lim))
        else:
            s[_VS] += max(self._avs, 1.0 / n) * (rs * rs - vs)
            s[_MS] += max(self._as, 1.0 / n) * rs
        s[_MF] += self._af * rf
        s[_P0] += self._ap * ((1.0 if repeat else 0.0) - s[_P0])
        return True

    @staticmethod
    def rebase(s: list[float], x: float, var: float) -> None:
        """The input changed meaning (its seasonal profile is now subtracted): both baselines
        restart at `x` with residual variance `var` (the profile's), counts and repeats kept."""
        v = var if 0.0 <= var <= _VAR_LIMIT else 0.0
        s[_MF] = s[_MS] = x
        s[_VF] = s[_VS] = v
        s[_EN] = 1.0
        s[_HELD] = 0.0

    def restart(self, s: list[float]) -> None:
        """After a repair: the next reading re-centres the fast baseline (a machine coming back
        is not a new anomaly); the slow baseline, the device's long-term normal, stays."""
        s[_HELD] = -1.0
        s[_EN] = 1.0
        s[_RUN] = 0.0


def _energy_z(energy: float, alpha: float) -> float:
    """Map an EW mean of squared standard normals to a z with a similar tail chance.

    The EW mean of chi2(1) has mean 1 and variance ≈ 2alpha/(2-alpha); a Wilson-Hilferty cube-root
    transform with that variance gives an approximately normal statistic.
    """
    if energy <= 1.0:
        return 0.0
    k = (2.0 - alpha) / alpha  # effective degrees of freedom
    # (E/1)^(1/3) ~ N(1 - 2/(9k), 2/(9k))
    v = 2.0 / (9.0 * k)
    return max(0.0, (energy ** (1.0 / 3.0) - (1.0 - v)) / math.sqrt(v))


class AdaptiveThreshold:
    """Per-device threshold: a decayed histogram of the device's own normal-reading scores.

    `threshold(h) = clamp(quantile_q(h) + margin, floor, ceiling)`; only readings not flagged
    are added (`learn_one`), so a long incident does not raise its own bar. The histogram is a
    list of `bins` floats in the device state.
    """

    def __init__(
        self,
        *,
        bins: int = 40,
        quantile: float = 0.999,
        margin: float = 0.05,
        floor: float = 0.5,
        ceiling: float = 0.8,
        decay: float = 1.0 / 5000.0,
        min_count: float = 200.0,
        every: int = 50,
    ) -> None:
        if not 0.0 < quantile < 1.0 or not 0.0 <= floor <= ceiling <= 1.0:
            raise ValueError("need 0 < quantile < 1 and 0 <= floor <= ceiling <= 1")
        self.bins = bins
        self.quantile = quantile
        self.margin = margin
        self.floor = floor
        self.ceiling = ceiling
        self.every = every
        self.keep = (1.0 - decay) ** every  # decay is per reading, applied every `every`
        self.min_count = min_count

    def new_state(self) -> list[float]:
        return [0.0] * (self.bins + 1)  # last slot: the cached threshold

    def threshold(self, h: list[float]) -> float:
        return h[-1] if h[-1] > 0.0 else self.floor

    def learn_one(self, h: list[float], score: float, n: int) -> None:
        """Add the `n`-th normal score; decay and recompute the threshold every `every`."""
        if not 0.0 <= score < 1.0:  # 1.0, out of range or NaN: never int() of inf/NaN
            if score != score:
                raise ValueError("score is NaN")
            score = 0.0 if score < 0.0 else 1.0 - 1e-12
        b = int(score * self.bins)
        h[b if b < self.bins else self.bins - 1] += 1.0
        if n % self.every == 0:
            keep = self.keep
            total = 0.0
            for i in range(self.bins):
                h[i] *= keep
                total += h[i]
            if total < self.min_count:
                h[-1] = self.floor
                return
            target = self.quantile * total
            acc = 0.0
            q = 1.0
            for i in range(self.bins):
                acc += h[i]
                if acc >= target:
                    q = (i + 1) / self.bins
                    break
            h[-1] = min(self.ceiling, max(self.floor, q + self.margin))


class SharedHalfSpaceTrees:
    """One river `HalfSpaceTrees` for the whole process, on device-normalized evidence.

    Its inputs are metric-name agnostic, so devices with any metric set share it: the three
    largest fast and slow |z| of the reading, the largest noise and stuck evidence, each
    squashed to [0, 1) by `z / (z + 3)`. It learns only readings that were not flagged (the
    same guard as the residual detectors). Kept as an option (`ScorerConfig.detector_mode`) and
    measured against the residual ensemble in `docs/models.md`.
    """

    def __init__(
        self, *, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 0
    ) -> None:
        from river import anomaly

        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.learned = 0

    @staticmethod
    def inputs(evidence: list[tuple[float, float, float, float]]) -> dict[str, float]:
        fast = [*sorted((e[0] for e in evidence), reverse=True), 0.0, 0.0, 0.0]
        slow = [*sorted((e[1] for e in evidence), reverse=True), 0.0, 0.0, 0.0]
        noise = max((e[2] for e in evidence), default=0.0)
        stuck = max((e[3] for e in evidence), default=0.0)
        out = {f"fast{i}": fast[i] / (fast[i] + 3.0) for i in range(3)}
        out.update({f"slow{i}": slow[i] / (slow[i] + 3.0) for i in range(3)})
        out["noise"] = noise / (noise + 3.0)
        out["stuck"] = stuck / (stuck + 3.0)
        return out

    def score_one(self, x: dict[str, float]) -> float:
        if self.learned < self.model.window_size:
            return 0.0
        return float(self.model.score_one(x))

    def learn_one(self, x: dict[str, float]) -> None:
        self.model.learn_one(x)
        self.learned += 1
