"""NAB-form window scorer: normalisation, timing reward, false-positive cost, threshold sweep."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeml.sim.window_score import (
    PROFILES,
    SeriesLabels,
    best_threshold,
    scaled_sigmoid,
    score_alarms,
)

LABELS = {
    "a": SeriesLabels(windows=((1000.0, 1100.0), (5000.0, 5100.0)), probation_end=100.0),
    "b": SeriesLabels(windows=((2000.0, 2200.0),)),
}
STARTS = {name: [w[0] for w in lab.windows] for name, lab in LABELS.items()}


def _scores(alarms: dict[str, list[float]]) -> dict[str, float]:
    return {p: r.score for p, r in score_alarms(alarms, LABELS).items()}


def _raw(alarms: dict[str, list[float]], profile: str) -> float:
    return score_alarms(alarms, LABELS, (profile,))[profile].raw


def test_published_nab_weights() -> None:
    assert {n: (p.a_tp, p.a_fp, p.a_fn) for n, p in PROFILES.items()} == {
        "standard": (1.0, -0.11, -1.0),
        "reward_low_FP": (1.0, -0.22, -1.0),
        "reward_low_FN": (1.0, -0.11, -2.0),
    }


def test_scaled_sigmoid_matches_nab_reference_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_never_alarming_scores_zero_in_every_profile() -> None:
    assert _scores({}) == {p: 0.0 for p in PROFILES}
    assert _scores({"a": [], "b": []}) == {p: 0.0 for p in PROFILES}


def test_alarm_at_each_window_start_scores_100_in_every_profile() -> None:
    scores = _scores(STARTS)
    assert scores == {p: pytest.approx(100.0) for p in PROFILES}


def test_earlier_detection_scores_more_and_end_of_window_earns_nothing() -> None:
    early = _raw({"b": [2020.0]}, "standard")
    late = _raw({"b": [2150.0]}, "standard")
    at_end = _raw({"b": [2200.0]}, "standard")
    missed = _raw({}, "standard")
    assert early > late > at_end > missed
    # the window's reward at its end is 0, so it only undoes the miss cost of that window
    assert at_end - missed == pytest.approx(1.0)


def test_only_the_earliest_alarm_in_a_window_counts() -> None:
    once = score_alarms({"b": [2050.0]}, LABELS)
    many = score_alarms({"b": [2050.0, 2060.0, 2199.0]}, LABELS)
    assert {p: r.score for p, r in once.items()} == {p: r.score for p, r in many.items()}
    assert many["standard"].detected == 1
    assert many["standard"].false_positives == 0


@pytest.mark.parametrize("profile", list(PROFILES))
def test_one_false_positive_before_any_window_costs_a_fp(profile: str) -> None:
    with_fp = {**STARTS, "a": [500.0, *STARTS["a"]]}
    delta = _raw(with_fp, profile) - _raw(STARTS, profile)
    assert delta == pytest.approx(PROFILES[profile].a_fp)


def test_false_positive_cost_grows_with_distance_after_a_window() -> None:
    # window "b" is 200 s wide: 3 widths after its end the cost is the full A_FP
    near, mid, far = (_raw({"b": [t]}, "standard") for t in (2210.0, 2400.0, 2800.0))
    missed = _raw({}, "standard")
    assert missed > near > mid > far
    assert far - missed == pytest.approx(PROFILES["standard"].a_fp)


def test_alarms_in_probation_are_ignored() -> None:
    assert _scores({"a": [50.0]}) == _scores({})
    assert score_alarms({"a": [50.0]}, LABELS)["standard"].false_positives == 0


def test_pairs_and_timestamps_score_the_same() -> None:
    pairs = {"a": [(900.0, False), (1010.0, True), (1020.0, False), (6000.0, True)]}
    assert _scores(pairs) == _scores({"a": [1010.0, 6000.0]})


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="no labels for series zzz"):
        score_alarms({"zzz": [1.0]}, LABELS)
    with pytest.raises(ValueError, match="choose one of standard"):
        score_alarms({}, LABELS, ("strict",))
    with pytest.raises(ValueError, match="overlaps"):
        SeriesLabels(windows=((0.0, 10.0), (5.0, 20.0)))
    with pytest.raises(ValueError, match="no window"):
        score_alarms({}, {"x": SeriesLabels()})


def _random_scores(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, end in (("a", 6000.0), ("b", 3000.0)):
        ts = np.sort(rng.uniform(0.0, end, 60)).round()
        out[name] = (ts, rng.integers(0, 12, ts.size).astype(float))  # many ties
    return out


@pytest.mark.parametrize(("seed", "profile"), list(itertools.product((1, 2, 3), PROFILES)))
def test_best_threshold_equals_brute_force_over_every_threshold(seed: int, profile: str) -> None:
    scores = _random_scores(seed)
    best = best_threshold(scores, LABELS, profile)
    candidates = [np.inf, *np.unique(np.concatenate([s for _, s in scores.values()]))]

    def at(threshold: float) -> float:
        alarms = {n: ts[s >= threshold].tolist() for n, (ts, s) in scores.items()}
        return score_alarms(alarms, LABELS, (profile,))[profile].score

    assert best.score == pytest.approx(max(at(t) for t in candidates))
    assert at(best.threshold) == pytest.approx(best.score)


def test_best_threshold_finds_the_separating_score() -> None:
    ts = np.arange(0.0, 6000.0, 10.0)
    level = np.where(np.isin(ts, STARTS["a"]), 0.9, 0.3)
    ts_b = np.arange(0.0, 3000.0, 10.0)
    level_b = np.where(np.isin(ts_b, STARTS["b"]), 0.8, 0.1)
    best = best_threshold({"a": (ts, level), "b": np.column_stack([ts_b, level_b])}, LABELS)
    assert best.threshold == 0.8
    assert best.score == pytest.approx(100.0)
    assert (best.detected, best.windows, best.false_positives) == (3, 3, 0)


def test_best_threshold_is_never_alarm_when_scores_carry_no_information() -> None:
    ts = np.arange(0.0, 6000.0, 10.0)
    best = best_threshold({"a": (ts, np.ones_like(ts))}, LABELS)
    # alarming everywhere costs ~0.11 per reading outside windows: never alarming wins
    assert (best.threshold, best.score, best.false_positives) == (np.inf, 0.0, 0)
