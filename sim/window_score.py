"""Window-based streaming anomaly score in the Numenta Anomaly Benchmark (NAB) form.

Each labelled anomaly window `[start, end]` earns the reward of its *earliest* alarm only,
weighted by the scaled sigmoid of the alarm's relative position in the window: `A_TP` at the
window start, falling to 0 at its end. An alarm outside every window costs `A_FP`, weighted as
NAB does by the sigmoid of its distance after the preceding window (an alarm just after a window
costs almost nothing, one three window lengths later or before any window costs the full
`A_FP`). A window without an alarm costs `A_FN`. Alarms before a series' `probation_end` are
ignored (NAB: the first 15% of a file, at most 750 rows, is for learning).

Per profile, over a set of series, the raw sum is normalised so that never alarming scores 0 and
an alarm at the start of every window scores 100:
`100 * (raw - null) / (perfect - null)` with `null = A_FN * windows` and `perfect = A_TP *
windows` (NAB's `scorer.py`). Weights are NAB's published profiles (`config/profiles.json`),
written here with their signs: standard `A_TP=1, A_FP=-0.11, A_FN=-1`; reward_low_FP
`A_FP=-0.22`; reward_low_FN `A_FN=-2`.

One deliberate difference from NAB: positions are measured in **event time**
(`(t - start) / (end - start)`), not in row indexes. So alarm timestamps alone can be scored, and
a gap in irregular sampling does not stretch or shrink a window. On regular sampling this is
NAB's position up to its `+1` row offset (NAB never reaches exactly 0 at the window end).

>>> labels = {"a": SeriesLabels(windows=((100.0, 200.0),))}
>>> round(score_alarms({"a": [100.0]}, labels)["standard"].score, 6)
100.0
>>> score_alarms({"a": []}, labels)["standard"].score
0.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "PROFILES",
    "FleetScore",
    "Profile",
    "ReadingScores",
    "SeriesLabels",
    "ThresholdResult",
    "best_threshold",
    "scaled_sigmoid",
    "score_alarms",
]


# one series' per-reading scores: (timestamps, scores), or an (n, 2) array of such rows
ReadingScores = tuple[ArrayLike, ArrayLike] | np.ndarray


@dataclass(frozen=True, slots=True)
class Profile:
    """NAB cost matrix with signs: rewards positive, costs negative."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("standard", 1.0, -0.11, -1.0),
        Profile("reward_low_FP", 1.0, -0.22, -1.0),
        Profile("reward_low_FN", 1.0, -0.11, -2.0),
    )
}


@dataclass(frozen=True, slots=True)
class SeriesLabels:
    """Ground truth of one series: sorted, disjoint windows `(start_ts, end_ts)` (inclusive,
    epoch seconds) and the end of its probationary period (alarms before it are ignored)."""

    windows: tuple[tuple[float, float], ...] = ()
    probation_end: float = -math.inf

    def __post_init__(self) -> None:
        previous_end = -math.inf
        for start, end in self.windows:
            if not (math.isfinite(start) and math.isfinite(end)) or end < start:
                raise ValueError(f"window ({start}, {end}): need finite start <= end")
            if start <= previous_end:
                raise ValueError(f"window ({start}, {end}) overlaps or precedes the one before")
            previous_end = end


@dataclass(frozen=True, slots=True)
class FleetScore:
    """One profile's result over a set of series; `score` is the normalised one."""

    profile: str
    score: float
    raw: float
    null: float
    perfect: float
    windows: int
    detected: int
    false_positives: int


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """The fleet-wide threshold (alarm when score >= threshold; `inf` = never alarm) with the
    best normalised score, and the counts at that threshold."""

    profile: str
    threshold: float
    score: float
    detected: int
    windows: int
    false_positives: int


def scaled_sigmoid(position: float) -> float:
    """NAB's `scaledSigmoid`: 0.98661 at -1 (window start), 0 at 0 (window end), -1 at >= 3."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def _parts(
    ts: np.ndarray, labels: SeriesLabels, profile: Profile
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per timestamp: the index of the window it falls in (-1 outside), the weighted score an
    alarm there would add (TP reward or FP cost), and whether it is scorable (past probation)."""
    window = np.full(ts.shape, -1, dtype=np.int64)
    value = np.empty(ts.shape, dtype=np.float64)
    starts = np.array([w[0] for w in labels.windows], dtype=np.float64)
    ends = np.array([w[1] for w in labels.windows], dtype=np.float64)
    # the last window starting at or before t; t is inside it when t <= its end
    k = np.searchsorted(starts, ts, side="right") - 1
    for i, (t, j) in enumerate(zip(ts.tolist(), k.tolist(), strict=True)):
        if j >= 0 and t <= ends[j]:
            width = ends[j] - starts[j]
            position = -(ends[j] - t) / width if width > 0 else -1.0
            window[i] = j
            value[i] = profile.a_tp * scaled_sigmoid(position) / _MAX_TP
        else:
            if j < 0:
                position = 3.0  # before any window: full cost
            else:
                width = ends[j] - starts[j]
                position = (t - ends[j]) / width if width > 0 else 3.0
            value[i] = profile.a_fp * -scaled_sigmoid(position)
    return window, value, ts >= labels.probation_end


def _alarm_times(items: Iterable[float] | Iterable[tuple[float, bool]]) -> np.ndarray:
    """Alarm timestamps from either plain timestamps or `(ts, is_alarm)` pairs."""
    times: list[float] = []
    for item in items:
        if isinstance(item, tuple | list):
            ts, is_alarm = item
            if is_alarm:
                times.append(float(ts))
        else:
            times.append(float(item))
    return np.asarray(times, dtype=np.float64)


def _check_names(given: Iterable[str], labels: Mapping[str, SeriesLabels]) -> None:
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise ValueError(f"no labels for series {', '.join(unknown)}; labelled: {len(labels)}")


def _bounds(labels: Mapping[str, SeriesLabels], profile: Profile) -> tuple[float, float, int]:
    windows = sum(len(lab.windows) for lab in labels.values())
    if windows == 0:
        raise ValueError("the labels hold no window: the normalised score is undefined")
    return profile.a_fn * windows, profile.a_tp * windows, windows


def score_alarms(
    alarms: Mapping[str, Iterable[float] | Iterable[tuple[float, bool]]],
    labels: Mapping[str, SeriesLabels],
    profiles: Sequence[str] = tuple(PROFILES),
) -> dict[str, FleetScore]:
    """Normalised score per profile of alarm decisions over every labelled series.

    `alarms[name]` is that series' alarm timestamps or its `(ts, is_alarm)` pairs; a labelled
    series missing from `alarms` never alarmed. Alarms of an unlabelled series are an error.
    """
    _check_names(alarms, labels)
    out: dict[str, FleetScore] = {}
    times = {name: _alarm_times(alarms.get(name, ())) for name in labels}
    for name in profiles:
        profile = _profile(name)
        null, perfect, windows = _bounds(labels, profile)
        raw, detected, fps = 0.0, 0, 0
        for series, lab in labels.items():
            window, value, live = _parts(times[series], lab, profile)
            best = np.full(len(lab.windows), profile.a_fn)
            for j, v, ok in zip(window.tolist(), value.tolist(), live.tolist(), strict=True):
                if not ok:
                    continue
                if j < 0:
                    raw += v
                    fps += 1
                else:
                    best[j] = max(best[j], v)  # the sigmoid falls in time: max = earliest
            detected += int(np.count_nonzero(best != profile.a_fn))
            raw += float(best.sum())
        out[name] = FleetScore(
            name,
            100.0 * (raw - null) / (perfect - null),
            raw,
            null,
            perfect,
            windows,
            detected,
            fps,
        )
    return out


def best_threshold(
    scores: Mapping[str, ReadingScores],
    labels: Mapping[str, SeriesLabels],
    profile: str = "standard",
) -> ThresholdResult:
    """The single fleet-wide threshold on per-reading scores that maximises the normalised
    score (NAB's threshold sweep, done exactly over every distinct score value).

    `scores[name]` is `(timestamps, scores)` of that series' readings (or an `(n, 2)` array).
    Sorting all readings by score once and updating each window's best reward as the threshold
    falls makes the sweep O(n log n) instead of one full scoring per candidate threshold.
    """
    _check_names(scores, labels)
    prof = _profile(profile)
    null, perfect, windows = _bounds(labels, prof)
    level, value, gid = [], [], []
    offset = 0
    for name, lab in labels.items():
        if name in scores:
            ts, sc = _columns(scores[name])
            window, contrib, live = _parts(ts, lab, prof)
            level.append(sc[live])
            value.append(contrib[live])
            gid.append(np.where(window[live] >= 0, window[live] + offset, -1))
        offset += len(lab.windows)
    all_level = np.concatenate(level) if level else np.empty(0)
    all_value = np.concatenate(value) if value else np.empty(0)
    all_gid = np.concatenate(gid) if gid else np.empty(0, dtype=np.int64)
    order = np.argsort(-all_level, kind="stable")
    best = np.full(windows, prof.a_fn)
    total = null
    result = (total, math.inf, 0, 0)
    detected = fps = 0
    lv, vv, gv = (all_level[order].tolist(), all_value[order].tolist(), all_gid[order].tolist())
    for i, (lev, v, g) in enumerate(zip(lv, vv, gv, strict=True)):
        if g < 0:
            total += v
            fps += 1
        elif v > best[g]:
            if best[g] == prof.a_fn:
                detected += 1
            total += v - best[g]
            best[g] = v
        # a threshold sits between distinct score values: evaluate after the last tie
        if (i + 1 == len(lv) or lv[i + 1] != lev) and total > result[0]:
            result = (total, lev, detected, fps)
    raw, threshold, det, fp = result
    return ThresholdResult(
        profile, threshold, 100.0 * (raw - null) / (perfect - null), det, windows, fp
    )


def _columns(item: ReadingScores) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(item, np.ndarray):
        if item.ndim != 2 or item.shape[1] != 2:
            raise ValueError(f"scores array must have shape (n, 2), got {item.shape}")
        ts: ArrayLike = item[:, 0]
        sc: ArrayLike = item[:, 1]
    else:
        ts, sc = item
    ts_arr = np.asarray(ts, dtype=np.float64)
    sc_arr = np.asarray(sc, dtype=np.float64)
    if ts_arr.shape != sc_arr.shape:
        raise ValueError(f"{ts_arr.size} timestamps but {sc_arr.size} scores")
    if np.isnan(sc_arr).any():
        raise ValueError("scores contain NaN; use -inf for 'no score' (never alarms)")
    return ts_arr, sc_arr


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
