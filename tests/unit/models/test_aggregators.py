"""Window aggregators: each one driven through a table of (points, expected result)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgeml.models.aggregators import (
    Count,
    Ewma,
    Max,
    Mean,
    Min,
    Moments,
    RateOfChange,
    Slope,
    Std,
)

T0 = 1_767_225_600.0  # epoch-sized timestamps: the anchors must keep this exact
PTS = [(T0 + 0.0, 1.0), (T0 + 1.0, 3.0), (T0 + 2.0, 2.0), (T0 + 4.0, 6.0)]


def _slope(points: list[tuple[float, float]]) -> float:
    t = np.array([p[0] for p in points]) - points[0][0]
    x = np.array([p[1] for p in points])
    return float(np.polyfit(t, x, 1)[0])


CASES: list[tuple[str, Any, list[tuple[float, float]], float]] = [
    ("count", Count(), PTS, 4.0),
    ("count-empty", Count(), [], 0.0),
    ("mean", Mean(), PTS, 3.0),
    ("mean-empty", Mean(), [], 0.0),
    ("mean-large-offset", Mean(), [(T0, 1e9 + 1.0), (T0 + 1, 1e9 + 3.0)], 1e9 + 2.0),
    ("std", Std(), PTS, float(np.std([1.0, 3.0, 2.0, 6.0]))),
    ("std-one-point", Std(), PTS[:1], 0.0),
    ("std-constant", Std(), [(T0 + i, 5.0) for i in range(5)], 0.0),
    ("slope", Slope(), PTS, _slope(PTS)),
    ("slope-line", Slope(), [(T0 + i, 2.0 * i + 1.0) for i in range(6)], 2.0),
    ("slope-one-point", Slope(), PTS[:1], 0.0),
    ("slope-same-time", Slope(), [(T0, 1.0), (T0, 2.0)], 0.0),
    ("min", Min(), PTS, 1.0),
    ("max", Max(), PTS, 6.0),
    ("min-out-of-order", Min(), [(T0 + 2, 0.5), (T0 + 1, 4.0)], 0.5),
    ("roc", RateOfChange(), PTS, (6.0 - 1.0) / 4.0),
    ("roc-out-of-order", RateOfChange(), [(T0 + 4, 6.0), (T0, 1.0)], 5.0 / 4.0),
    ("roc-one-point", RateOfChange(), PTS[:1], 0.0),
    ("ewma-count", Ewma(span=3), [(T0, 0.0), (T0 + 1, 4.0)], 2.0),
    ("ewma-time", Ewma(tau=1.0), [(T0, 0.0), (T0 + 1, 1.0)], 1.0 - math.exp(-1.0)),
    ("ewma-ignores-older", Ewma(tau=1.0), [(T0, 3.0), (T0 - 5, 100.0)], 3.0),
    ("ewma-empty", Ewma(tau=1.0), [], math.nan),
]


@pytest.mark.parametrize(
    ("aggregator", "points", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_aggregator_table(aggregator: Any, points: list[tuple[float, float]], expected: float):
    state = aggregator.initialize()
    for ts, value in points:
        state = aggregator.agg(state, ts, value)
    got = aggregator.result(state)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("aggregator", [Count(), Mean(), Std(), Slope(), Min(), Max()])
def test_retract_undoes_agg(aggregator: Any):
    """Sliding: folding a point in and retracting it again gives the same result."""
    state = aggregator.initialize()
    for ts, value in PTS:
        state = aggregator.agg(state, ts, value)
    before = aggregator.result(state)
    state = aggregator.agg(state, T0 + 9.0, 42.0)
    state = aggregator.retract(state, T0 + 9.0, 42.0)
    assert aggregator.result(state) == pytest.approx(before, rel=1e-9, abs=1e-9)


def test_moments_rebase_matches_incremental():
    m = Moments()
    rng = np.random.default_rng(3)
    ts = list(T0 + np.cumsum(rng.uniform(0.5, 1.5, 300)))
    vs = list(rng.normal(50.0, 2.0, 300))
    state = m.initialize()
    for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
        m.agg(state, t, v)
        if i >= 60:
            m.retract(state, ts[i - 60], vs[i - 60])
    exact = m.rebase(m.initialize(), ts[-60:], vs[-60:])
    for agg in (Mean(), Std(), Slope()):
        assert agg.result(state) == pytest.approx(agg.result(exact), rel=1e-8)


def test_ewma_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        Ewma(tau=0.0)
