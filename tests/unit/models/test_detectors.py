"""Residual detector: calibrated on normal data, fires on each fault shape, never learns what it
flags; the adaptive threshold follows a device's own score distribution."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.models.detectors import (
    AdaptiveThreshold,
    DetectorConfig,
    ResidualDetector,
)


def _warm(det: ResidualDetector, seed: int = 0, n: int = 600) -> tuple[list[float], np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = np.round(50.0 + rng.normal(0.0, 0.3, n), 2)
    state = det.new_metric_state(float(xs[0]))
    for x in xs:
        ev = det.score_one(state, float(x))
        det.learn_one(state, float(x), ev)
    return state, xs


def test_normal_data_gives_small_evidence():
    det = ResidualDetector()
    state, _ = _warm(det)
    rng = np.random.default_rng(1)
    worst = 0.0
    for x in np.round(50.0 + rng.normal(0.0, 0.3, 2000), 2):
        ev = det.score_one(state, float(x))
        det.learn_one(state, float(x), ev)
        worst = max(worst, max(ev))
    assert worst < 6.0


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("spike", [53.0], 0),
        ("level-shift", [51.8] * 30, 1),
        ("noise-burst", list(50.0 + np.random.default_rng(5).normal(0, 2.5, 20)), 2),
        ("stuck", [50.13] * 12, 3),
    ],
)
def test_each_fault_shape_is_seen(name: str, values: list[float], kind: int):
    det = ResidualDetector()
    state, _ = _warm(det)
    best = [0.0, 0.0, 0.0, 0.0]
    for x in values:
        ev = det.score_one(state, x)
        det.learn_one(state, x, ev)
        best = [max(a, b) for a, b in zip(best, ev, strict=True)]
    assert best[kind] > 6.0, (name, best)


def test_guard_does_not_learn_flagged_anomalies():
    det = ResidualDetector()
    state, _ = _warm(det)
    before = list(state)
    for x in (60.0, 40.0, 58.0):  # spikes of ~30 sigma
        ev = det.score_one(state, x)
        assert max(ev) > det.config.guard_z
        assert det.learn_one(state, x, ev) is False
    # slow baseline and both variances untouched; fast mean moved by a clipped step only
    assert state[2:4] == before[2:4]
    assert state[1] == before[1]
    assert abs(state[0] - before[0]) < 3 * det.config.alpha_fast * det.config.guard_z * 0.3 * 2
    # and normal data afterwards scores as normal again once the short-term energy fades
    for x in (50.1, 49.9, 50.2, 49.8, 50.0, 50.3, 49.7, 50.0, 50.1, 49.9, 50.0, 50.2):
        ev = det.score_one(state, x)
        det.learn_one(state, x, ev)
    assert max(ev) < 4.0
    assert state[2:4] == pytest.approx(before[2:4], rel=0.1)


def test_guard_lets_a_lasting_change_be_learned_eventually():
    det = ResidualDetector(DetectorConfig(relearn_after=50))
    state, _ = _warm(det)
    rng = np.random.default_rng(2)
    evs = []
    for x in 60.0 + rng.normal(0.0, 0.3, 400):
        ev = det.score_one(state, float(x))
        det.learn_one(state, float(x), ev)
        evs.append(max(ev))
    assert evs[0] > 10 and evs[-1] < 4.0


def test_adaptive_threshold_follows_device_scores_within_bounds():
    thr = AdaptiveThreshold(floor=0.5, ceiling=0.8, every=10, min_count=50)
    quiet, noisy = thr.new_state(), thr.new_state()
    rng = np.random.default_rng(0)
    for n in range(1, 3001):
        thr.learn_one(quiet, float(rng.uniform(0.0, 0.2)), n)
        thr.learn_one(noisy, float(rng.uniform(0.0, 0.7)), n)
    assert thr.threshold(quiet) == 0.5  # the floor
    assert 0.7 < thr.threshold(noisy) <= 0.8  # its own quantile + margin, under the ceiling
    with pytest.raises(ValueError):
        AdaptiveThreshold(quantile=1.5)
