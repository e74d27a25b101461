"""Windowed features against a brute-force numpy computation, out-of-order and late readings,
idle devices, arbitrary metric names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeml.models.features import PER_WINDOW, FeatureConfig, FeatureExtractor, WindowSpec
from edgeml.topics.records import SensorReading

T0 = 1_767_225_600.0


def _stream(seed: int, n: int, *, shuffle: float, late: float) -> list[tuple[float, float]]:
    """(ts, value) in arrival order: ~1 s apart, some swapped (within 3 s), some very late."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n) + rng.uniform(-0.2, 0.2, n)
    vs = 20.0 + np.cumsum(rng.normal(0.0, 0.3, n)) + rng.normal(0.0, 0.5, n)
    order = list(range(n))
    for i in range(2, n - 3):
        if rng.random() < shuffle:  # out of order, within the 5 s grace
            order[i], order[i + 2] = order[i + 2], order[i]
    for i in range(30, n - 20):
        if rng.random() < late:  # arrives 15 readings later than it should: late
            j = order.pop(i)
            order.insert(i + 15, j)
    return [(float(ts[i]), float(vs[i])) for i in order]


def _reference(
    config: FeatureConfig, arrivals: list[tuple[float, float]]
) -> list[tuple[bool, list[float]]]:
    """Per arrival: (late, feature vector) computed from scratch with numpy."""
    out: list[tuple[bool, list[float]]] = []
    kept: list[tuple[float, float]] = []  # non-late points in arrival order
    ewma = [[math.nan, -math.inf] for _ in config.windows]
    wm = -math.inf
    for ts, x in arrivals:
        late = ts < wm - config.grace_s
        if not late:
            wm = max(wm, ts)
            kept.append((ts, x))
            for k, w in enumerate(config.windows):
                e = ewma[k]
                if math.isnan(e[0]):
                    e[0], e[1] = x, ts
                elif ts >= e[1]:
                    a = (
                        2.0 / (w.size + 1.0)
                        if w.kind == "count"
                        else 1.0 - math.exp(-(ts - e[1]) / w.size)
                    )
                    e[0] += a * (x - e[0])
                    e[1] = ts
        ordered = sorted(kept, key=lambda p: p[0])  # stable: ties keep arrival order
        feats = [x]
        for k, w in enumerate(config.windows):
            if w.kind == "time":
                win = [p for p in ordered if p[0] > wm - w.size]
            else:
                win = ordered[-int(w.size) :]
            t = np.array([p[0] for p in win])
            v = np.array([p[1] for p in win])
            mean = float(v.mean())
            std = float(v.std())
            slope = float(np.polyfit(t - t[0], v, 1)[0]) if len(v) >= 2 and np.ptp(t) else 0.0
            span = t[-1] - t[0]
            roc = float((v[-1] - v[0]) / span) if span > 0 else 0.0
            others = list(v)
            if not late and (ts, x) in win:
                others.remove(x)
            z = 0.0
            if len(others) >= 2 and np.std(others) > 1e-9 * (1 + abs(np.mean(others))):
                z = float((x - np.mean(others)) / np.std(others))
            ew = ewma[k][0] if not math.isnan(ewma[k][0]) else x
            feats.extend([mean, std, float(v.min()), float(v.max()), slope, roc, ew, z])
        out.append((late, feats))
    return out


CONFIGS = {
    "10s-60s": FeatureConfig(),
    "3s-20s-grace5": FeatureConfig(windows=(WindowSpec(3.0), WindowSpec(20.0))),
    "count-5n-20n": FeatureConfig(windows=(WindowSpec(5, "count"), WindowSpec(20, "count"))),
    "mixed-10s-30n": FeatureConfig(windows=(WindowSpec(10.0), WindowSpec.parse("30n"))),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize(("shuffle", "late"), [(0.0, 0.0), (0.15, 0.0), (0.1, 0.03)])
def test_features_match_brute_force(name: str, shuffle: float, late: float):
    config = CONFIGS[name]
    arrivals = _stream(7, 400, shuffle=shuffle, late=late)
    fx = FeatureExtractor(config)
    state = fx.new_state()
    expected = _reference(config, arrivals)
    for i, ((ts, x), (want_late, want)) in enumerate(zip(arrivals, expected, strict=True)):
        row = fx.update(state, SensorReading("d", ts, i, {"m": x}))
        assert row.late == want_late, i
        got = row.metrics["m"]
        assert len(got) == len(config.names)
        if row.late:
            continue  # a late reading is featurized against the windows without it: below
        assert got == pytest.approx(want, rel=1e-7, abs=1e-7), (i, config.names)
    if late:
        assert any(flag for flag, _ in expected)


def test_names_and_index():
    config = FeatureConfig()
    assert config.names[0] == "value"
    assert config.names[config.index("z", 1)] == "z_60s"
    assert len(config.names) == 1 + len(PER_WINDOW) * 2


def test_late_reading_is_flagged_and_changes_nothing():
    fx = FeatureExtractor()
    state = fx.new_state()
    for i in range(30):
        fx.update(state, SensorReading("d", T0 + i, i, {"m": float(i % 3)}))
    before = state.dump()
    row = fx.update(state, SensorReading("d", T0 + 10, 99, {"m": 1000.0}))
    assert row.late
    assert state.dump() == before
    z = row.metrics["m"][FeatureConfig().index("z", 0)]
    assert z > 100  # scored against the current window


def test_out_of_order_within_grace_equals_in_order():
    fx = FeatureExtractor()
    ordered, shuffled = fx.new_state(), fx.new_state()
    pts = [(T0 + i, float(np.sin(i))) for i in range(50)]
    arrival = [*pts[:20], pts[22], pts[20], pts[21], *pts[23:]]
    for i, (t, v) in enumerate(pts):
        fx.update(ordered, SensorReading("d", t, i, {"m": v}))
    for i, (t, v) in enumerate(arrival):
        row = fx.update(shuffled, SensorReading("d", t, i, {"m": v}))
        assert not row.late
    a, b = ordered.metrics["m"], shuffled.metrics["m"]
    assert a.ts == b.ts and a.vs == b.vs
    for ma, mb in zip(a.moments, b.moments, strict=True):
        assert ma == pytest.approx(mb, rel=1e-9, abs=1e-9)


def test_idle_device_resets_windows_and_stale_metric_is_dropped():
    config = FeatureConfig(idle_timeout_s=60.0)
    fx = FeatureExtractor(config)
    state = fx.new_state()
    for i in range(20):
        fx.update(state, SensorReading("d", T0 + i, i, {"a": 1.0 + i, "b": 2.0}))
    assert not state.is_idle(T0 + 50, config.idle_timeout_s)
    assert state.is_idle(T0 + 200, config.idle_timeout_s)
    # the metric set changes: "b" stops, "c" appears; "b" goes once it is idle-old
    for i in range(20, 100):
        fx.update(state, SensorReading("d", T0 + i, i, {"a": 1.0, "c": 3.0}))
    assert set(state.metrics) == {"a", "b", "c"}  # dropped lazily, when the metric set changes
    fx.update(state, SensorReading("d", T0 + 100, 100, {"zz.any/name with spaces": 1.0}))
    assert "b" not in state.metrics
    # a reading after a long silence starts from empty windows
    row = fx.update(state, SensorReading("d", T0 + 1000, 101, {"a": 50.0}))
    mean_10 = row.metrics["a"][config.index("mean", 0)]
    assert mean_10 == 50.0
    assert set(state.metrics) == {"a"}


def test_window_spec_validation():
    assert WindowSpec.parse("10s") == WindowSpec(10.0)
    assert WindowSpec.parse("20n") == WindowSpec(20.0, "count")
    assert WindowSpec(20, "count").name == "20n"
    with pytest.raises(ValueError, match="use"):
        WindowSpec.parse("10m")
    with pytest.raises(ValueError):
        WindowSpec(1, "count")
    with pytest.raises(ValueError, match="kind"):
        WindowSpec(5, "rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FeatureConfig(windows=())


def test_long_run_stays_exact():
    """Running sums with periodic exact rebase do not drift over many thousand readings."""
    fx = FeatureExtractor()
    state = fx.new_state()
    rng = np.random.default_rng(1)
    vals = 1000.0 + rng.normal(0, 0.01, 5000)
    row = None
    for i, v in enumerate(vals):
        row = fx.update(state, SensorReading("d", T0 + i, i, {"p": float(v)}))
    assert row is not None
    window = vals[-60:]
    got = row.metrics["p"]
    config = FeatureConfig()
    assert got[config.index("mean", 1)] == pytest.approx(window.mean(), rel=1e-12)
    assert got[config.index("std", 1)] == pytest.approx(window.std(), rel=1e-6)
