"""Reference detectors: per-reading scores and their best fleet-wide threshold score."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.sim.baselines import baseline_score, baseline_scores, ew_zscore, half_space_trees
from edgeml.sim.corpus import build_corpus
from edgeml.sim.window_score import best_threshold


def test_ew_zscore_scores_a_spike_above_ordinary_noise_and_survives_flat_input() -> None:
    x = np.random.default_rng(0).normal(10.0, 1.0, 500)
    x[400] += 8.0
    z = ew_zscore(x)
    assert np.all(z[:50] == 0.0) and z.shape == x.shape
    assert z[400] == z.max() and z[400] > 5.0
    flat = ew_zscore(np.full(100, 3.0))
    assert np.all(flat == 0.0)
    with pytest.raises(ValueError, match="half_life"):
        ew_zscore(x, half_life=0)


def test_half_space_trees_scores_are_in_unit_range_and_rank_a_far_outlier_high() -> None:
    x = np.random.default_rng(1).normal(0.0, 1.0, 600)
    x[550] = 40.0
    s = half_space_trees(x)
    assert s.shape == x.shape and np.all((s >= 0.0) & (s <= 1.0))
    assert s[550] > np.median(s[300:])


def test_baseline_score_is_the_best_threshold_of_its_scores() -> None:
    corpus = [s for s in build_corpus(0) if s.name.startswith(("spikes-1s", "shift-1s"))]
    result = baseline_score(corpus, "ew_zscore", "holdout")
    scores = baseline_scores(corpus, "ew_zscore", "holdout")
    assert set(scores) == {"spikes-1s-b", "shift-1s-b"}
    labels = {s.name: s.labels for s in corpus if s.name in scores}
    assert result == best_threshold(scores, labels)
    assert result.windows == 3
    with pytest.raises(ValueError, match="choose one of half_space_trees, ew_zscore"):
        baseline_score(corpus, "isolation_forest")
