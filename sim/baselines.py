"""Reference detectors scored with the same window scorer as ours (`sim.window_score`).

Both give one score per reading, computed before the reading is learned (a streaming detector
never sees the reading it scores), and both know nothing of time: they count readings.

- `half_space_trees`: river's `anomaly.HalfSpaceTrees` behind `preprocessing.MinMaxScaler`, as
  river's documentation recommends (the trees assume features in [0, 1]); river's defaults
  (10 trees, height 8, window 250) and a fixed seed.
- `ew_zscore`: `|x - mean| / sd` against an exponentially weighted mean and variance (half-life
  in readings, scoring from the `half_life`-th reading on). Its sd has a floor of 1e-3 of the
  level (plus 1e-9) so an exactly flat stretch does not divide by zero; the score is otherwise
  unbounded.

`baseline_score(series, name, split, profile)` is the best fleet-wide threshold's normalised
score of one baseline on a corpus split (`sim.window_score.best_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from river import anomaly, compose, preprocessing

from edgeml.sim.corpus import SPLITS, CorpusSeries
from edgeml.sim.window_score import PROFILES, ThresholdResult, best_threshold

__all__ = ["BASELINES", "baseline_score", "baseline_scores", "ew_zscore", "half_space_trees"]


def half_space_trees(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int = 42,
    n_trees: int = 10,
    height: int = 8,
    window_size: int = 250,
) -> np.ndarray:
    """Per-reading HalfSpaceTrees scores (higher = more anomalous, in [0, 1])."""
    model = compose.Pipeline(
        preprocessing.MinMaxScaler(),
        anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed),
    )
    out = np.empty(len(values))
    for i, value in enumerate(np.asarray(values, dtype=np.float64).tolist()):
        x = {"x": value}
        out[i] = model.score_one(x)
        model.learn_one(x)
    return out


def ew_zscore(values: Sequence[float] | np.ndarray, *, half_life: float = 50.0) -> np.ndarray:
    """Per-reading `|x - mean| / sd` against EW moments of the readings before it (0 for the
    first `ceil(half_life)` readings)."""
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    alpha = 1.0 - 2.0 ** (-1.0 / half_life)
    data = np.asarray(values, dtype=np.float64).tolist()
    out = np.zeros(len(data))
    if not data:
        return out
    mean, var = data[0], 0.0
    warmup = math.ceil(half_life)  # moments of fewer readings are not estimates yet: score 0
    for i in range(1, len(data)):
        x = data[i]
        if i >= warmup:
            out[i] = abs(x - mean) / max(math.sqrt(var), 1e-3 * abs(mean) + 1e-9)
        delta = x - mean
        mean += alpha * delta
        var = (1.0 - alpha) * (var + alpha * delta * delta)  # West's EW variance update
    return out


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "half_space_trees": half_space_trees,
    "ew_zscore": ew_zscore,
}


def baseline_scores(
    series: Sequence[CorpusSeries], name: str, split: str | None = "holdout"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{series name: (timestamps, scores)}` of one baseline on the series of a split."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    detector = BASELINES[name]
    return {s.name: (s.ts, detector(s.values)) for s in series if split is None or s.split == split}


def baseline_score(
    series: Sequence[CorpusSeries],
    name: str,
    split: str | None = "holdout",
    profile: str = "standard",
) -> ThresholdResult:
    """Best fleet-wide threshold result of baseline `name` on `split` (None = all series)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    scores = baseline_scores(series, name, split)
    labels = {s.name: s.labels for s in series if s.name in scores}
    return best_threshold(scores, labels, profile)
