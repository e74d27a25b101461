"""Calibrated scores (`models.calibration`): monotone, never tied at the top, comparable across
devices whose raw evidence lives on different scales."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from edgeml.models.calibration import ScoreCalibrator, tail_nines


def _trained(values: np.ndarray) -> tuple[ScoreCalibrator, list[float]]:
    cal = ScoreCalibrator()
    s = cal.new_state()
    for v in values.tolist():
        cal.learn(s, v)
    return cal, s


def test_tail_nines_is_continuous_and_exact_far_out() -> None:
    assert tail_nines(0.0) == math.log10(2.0)
    # the two branches meet at z = 30 (erfc below, the asymptotic series above)
    assert abs(tail_nines(29.999999) - tail_nines(30.000001)) < 1e-4
    assert abs(tail_nines(10.0) - 23.1181) < 1e-3  # Q(10) = 7.62e-24
    assert math.isfinite(tail_nines(1e6))


# no subnormals: once an ONNX session of the suite has set flush-to-zero on this thread,
# hypothesis refuses to draw them (and no evidence is subnormal)
@given(st.lists(st.floats(0.0, 1e12, allow_subnormal=False), min_size=2, max_size=50, unique=True))
def test_scores_strictly_increase_with_the_evidence_below_one(evidence: list[float]) -> None:
    cal, s = _trained(np.abs(np.random.default_rng(0).normal(0.0, 1.0, 300)) * 2.0)
    # values 0.1 % apart (closer ones can share a float log1p: rounding, not saturation)
    above: list[float] = []
    for e in sorted(e for e in evidence if cal.z(s, e) > 0.0):
        if not above or e > above[-1] * 1.001:
            above.append(e)
    scores = [cal.score(s, e) for e in above]
    assert all(0.0 < x < 1.0 for x in scores)
    assert all(b > a for a, b in itertools.pairwise(scores))  # no ties at the top


def test_the_same_rarity_scores_the_same_on_devices_of_different_scales() -> None:
    rng = np.random.default_rng(1)
    base = np.abs(rng.normal(0.0, 1.0, 3000)) + 0.5
    quiet, q = _trained(base)
    loud, lo = _trained(np.expm1(np.log1p(base) + 3.0))  # same shape, evidence ~20x larger
    # a reading 5 sd above each device's own typical evidence scores the same on both
    quiet_5sd, loud_5sd = (
        cal.score(s, math.expm1(s[0] + 5.0 * math.sqrt(s[1])))
        for cal, s in ((quiet, q), (loud, lo))
    )
    assert quiet_5sd > 0.5 and abs(quiet_5sd - loud_5sd) < 1e-9
    # the loud device's ordinary evidence is ordinary for it, not an anomaly
    assert loud.score(lo, float(np.expm1(np.log1p(base[-1]) + 3.0))) < 0.5


def test_nothing_is_scored_while_warming_up() -> None:
    cal = ScoreCalibrator()
    s = cal.new_state()
    for _ in range(cal.config.warmup - 1):
        cal.learn(s, 1.0)
    assert cal.score(s, 1e9) == 0.0
