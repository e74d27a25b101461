"""The compiled kernel (`models.kernel`) against the pure-Python reference, its oracle.

Every output of every reading (scores, thresholds, flags, alerts with their ids and drivers,
failure rows and reasons) and every state (`DeviceState.to_bytes`) must be equal: random
readings with gaps, NaN and missing metrics, late and far-ahead readings, re-deliveries,
counter restarts, long silences, metric churn and maintenance (hypothesis); the simulator
seeds; the detection corpus. Plus the hand-over cases: what the kernel leaves to the reference
gives the reference's results and errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeml.models.scoring import DeviceFailure, DeviceState, ScoredReading, Scorer
from edgeml.sim.corpus import build_corpus
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import MaintenanceEvent, SensorReading

TOL = 1e-9


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL * (1 + abs(a))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _view(s: ScoredReading) -> tuple[object, ...]:
    alerts = [
        (a.alert_id, a.device_id, a.state, a.severity, a.ts, a.opened_ts, a.seq, a.score,
         a.threshold, tuple((d.metric, d.feature, d.value, d.zscore) for d in a.drivers),
         a.site, a.sent_at)
        for a in s.alerts
    ]  # fmt: skip
    return (
        s.reading.device_id, s.reading.seq, s.anomaly_score, s.failure_prob, s.is_anomaly,
        s.late, s.threshold, s.failure_row, s.redelivered, s.failure_reason, alerts,
    )  # fmt: skip


def _results(res: Sequence[ScoredReading]) -> object:
    if isinstance(res, DeviceFailure):
        return ("failure", type(res.error).__name__, str(res.error))
    return [_view(s) for s in res]


def _pair(**kw: object) -> tuple[Scorer, Scorer]:
    kernel = Scorer(kernel="compiled", keep_failure_rows=True, **kw)  # type: ignore[arg-type]
    reference = Scorer(kernel="reference", keep_failure_rows=True, **kw)  # type: ignore[arg-type]
    assert kernel._kernel is not None and reference._kernel is None
    kernel._kernel.min_readings = 1  # every device through the kernel, however few readings
    return kernel, reference


def _replay(
    readings: Sequence[SensorReading],
    cuts: Sequence[int],
    events: dict[int, MaintenanceEvent] | None = None,
) -> Scorer:
    """Score `readings` in chunks of `cuts` with both scorers; assert equal at every step."""
    kernel, reference = _pair()
    ids = sorted({r.device_id for r in readings})
    sk = {d: kernel.new_state(d) for d in ids}
    sr = {d: reference.new_state(d) for d in ids}
    i = 0
    step = 0
    while i < len(readings):
        size = cuts[step % len(cuts)]
        chunk = readings[i : i + size]
        if events and step in events:
            kernel.learn_maintenance(events[step])
            reference.learn_maintenance(events[step])
        i += size
        step += 1
        groups: dict[str, list[SensorReading]] = {}
        for r in chunk:
            groups.setdefault(r.device_id, []).append(r)
        a = kernel.score_many([(sk[d], rs) for d, rs in groups.items()])
        b = reference.score_many([(sr[d], rs) for d, rs in groups.items()])
        for x, y in zip(a, b, strict=True):
            assert _close(_results(x), _results(y))
        for d in groups:
            if not isinstance(a[list(groups).index(d)], DeviceFailure):
                assert sk[d].to_bytes() == sr[d].to_bytes()
    return kernel


# --- random readings ---------------------------------------------------------------------------
_NAMES = ("temperature", "humidity", "pressure", "vibration", "m4", "m5")
_value = st.one_of(
    st.floats(-50.0, 50.0, allow_nan=False, allow_subnormal=False),
    st.sampled_from([0.0, 1.0, 1.0, 1.0, float("nan"), 1e300, -1e300]),
)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[SensorReading], list[int]]:
    devices = draw(st.integers(1, 3))
    n = draw(st.integers(1, 160))
    gaps = draw(st.lists(st.sampled_from([1.0, 1.0, 2.0, 0.5, 30.0, 700.0, 5000.0, -3.0,
                                          -20.0, 0.0, 9e4]), min_size=1, max_size=12))  # fmt: skip
    out: list[SensorReading] = []
    clock = [1.7e9 + draw(st.floats(0.0, 86400.0, allow_subnormal=False)) for _ in range(devices)]
    seqs = [0] * devices
    for i in range(n):
        d = draw(st.integers(0, devices - 1))
        clock[d] += gaps[i % len(gaps)]
        kind = draw(st.sampled_from(["next"] * 8 + ["dup", "restart", "jump"]))
        ts = clock[d] + (3000.0 if kind == "jump" else 0.0)
        if kind == "next":
            seqs[d] += 1
        elif kind == "restart":
            seqs[d] = 0
        names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=5, unique=True))
        metrics = {m: draw(_value) for m in names}
        out.append(SensorReading(f"d{d}", ts, seqs[d], metrics, site="s1"))
    cuts = draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))
    return out, cuts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams())
def test_random_readings_equal_the_reference(stream: tuple[list[SensorReading], list[int]]):
    readings, cuts = stream
    _replay(readings, cuts)


def _sim(seed: int, devices: int, count: int) -> list[SensorReading]:
    return list(simulate(SimConfig(devices=devices, count=count, seed=seed)).readings())


@pytest.mark.parametrize("seed", [3, 11])
def test_simulator_seeds_equal_the_reference(seed: int):
    """Simulated fleets (incidents, alerts, failure rows): long enough to warm everything."""
    readings = _sim(seed, 3, 1500)
    kernel = _replay(readings, [1, 37, 5, 120, 64])
    assert kernel._kernel is not None and kernel._kernel.compiled_devices > 0
    assert kernel._kernel.reference_devices == 0


def test_maintenance_and_late_copies_equal_the_reference():
    """Queued maintenance (the device is left to the reference: it trains the shared online
    model in order) and late re-sends of old readings."""
    readings = _sim(5, 2, 700)
    late = [SensorReading(r.device_id, r.ts - 60.0, r.seq, r.metrics) for r in readings[300:340]]
    mixed = readings[:400] + late + readings[400:]
    events = {
        3: MaintenanceEvent("dev-0001", readings[200].ts, "repair"),
        7: MaintenanceEvent("dev-0000", readings[500].ts, "failure"),
    }
    kernel = _replay(mixed, [25, 3, 50], events)
    assert kernel._kernel is not None and kernel._kernel.reference_devices >= 1


def test_detection_corpus_equals_the_reference():
    """Every corpus regime (seasonal switches, setpoints, sawtooths, irregular sampling), as
    `sim.corpus_eval.run_series` scores it: one device per series, 50 readings per call."""
    for series in build_corpus(0)[::2]:
        readings = [
            SensorReading(series.name, float(t), i, {series.metric: float(v)})
            for i, (t, v) in enumerate(zip(series.ts.tolist(), series.values.tolist(), strict=True))
        ][:4000]
        _replay(readings, [50])


def test_metric_budget_overflow_goes_to_the_reference():
    kernel, reference = _pair()
    many = {f"m{i}": float(i) for i in range(40)}
    readings = [SensorReading("d", 1000.0 + i, i, dict(many)) for i in range(5)]
    a, b = kernel.new_state("d"), reference.new_state("d")
    assert _close(_results(kernel.score(a, readings)), _results(reference.score(b, readings)))
    assert a.to_bytes() == b.to_bytes()
    assert kernel._kernel is not None and kernel._kernel.reference_devices == 1


def test_a_poisoned_state_fails_the_same_way():
    kernel, reference = _pair()
    readings = _sim(2, 1, 200)
    a, b = kernel.new_state("dev-0000"), reference.new_state("dev-0000")
    kernel.score(a, readings[:100])
    reference.score(b, readings[:100])
    for s in (a, b):
        next(iter(s.detectors.values()))[1] = float("nan")  # a variance poisoned
    ra = kernel.score_many([(a, readings[100:])])[0]
    rb = reference.score_many([(b, readings[100:])])[0]
    assert isinstance(ra, DeviceFailure) and isinstance(rb, DeviceFailure)
    assert _results(ra) == _results(rb)
    with pytest.raises(type(rb.error), match="outside"):
        kernel.score(a, readings[100:])


def test_non_finite_time_fails_the_same_way():
    kernel, reference = _pair()
    bad = [SensorReading("d", 1000.0, 1, {"x": 1.0}), SensorReading("d", math.inf, 2, {"x": 1.0})]
    ra = kernel.score_many([(kernel.new_state("d"), bad)])[0]
    rb = reference.score_many([(reference.new_state("d"), bad)])[0]
    assert isinstance(ra, DeviceFailure) and _results(ra) == _results(rb)


def test_states_round_trip_between_the_two_paths():
    """A state the kernel wrote, restored from bytes, scores on in the reference identically
    (and the other way round): EDS3 stays the one format."""
    kernel, reference = _pair()
    readings = _sim(7, 1, 900)
    a = kernel.new_state("dev-0000")
    b = reference.new_state("dev-0000")
    kernel.score(a, readings[:450])
    reference.score(b, readings[:450])
    a2 = DeviceState.from_bytes(a.to_bytes())
    b2 = DeviceState.from_bytes(b.to_bytes())
    ra = reference.score(a2, readings[450:])
    rb = kernel.score(b2, readings[450:])
    assert _close(_results(ra), _results(rb))
    assert a2.to_bytes() == b2.to_bytes()


def test_unknown_kernel_name_is_refused():
    with pytest.raises(ValueError, match="kernel must be"):
        Scorer(kernel="fast")  # type: ignore[arg-type]


def test_warm_up_compiles_once_per_process():
    from edgeml.models.kernel import warm, warm_seconds

    Scorer()
    first = warm_seconds()
    assert first is not None and first > 0.0
    assert warm() == 0.0 and warm_seconds() == first


def test_kernel_scores_np_float_inputs_like_python_floats():
    kernel, reference = _pair()
    readings = [
        SensorReading("d", 1000.0 + i, i, {"x": float(np.float64(i % 7))}) for i in range(90)
    ]
    assert _close(
        _results(kernel.score(kernel.new_state("d"), readings)),
        _results(reference.score(reference.new_state("d"), readings)),
    )


def test_values_the_arrays_cannot_hold_go_to_the_reference():
    """A seq past int64 (validation refuses it; in-process callers may not): the reference
    scores the batch, and the device's error is the reference's."""
    kernel, reference = _pair()
    readings = [SensorReading("d", 1000.0, 2**64, {"x": 1.0})]
    ra = kernel.score_many([(kernel.new_state("d"), readings)])[0]
    rb = reference.score_many([(reference.new_state("d"), readings)])[0]
    assert _close(_results(ra), _results(rb))
    assert kernel._kernel is not None and kernel._kernel.reference_devices == 1


def test_failure_model_probabilities_equal_the_reference():
    """The shipped ONNX failure model on the kernel's rows (one array, no Python lists)."""
    from edgeml.models.registry import load_promoted
    from edgeml.models.shipped import SHIPPED_ROOT

    model = load_promoted(SHIPPED_ROOT)
    kernel, reference = _pair(failure_model=model)
    readings = _sim(4, 2, 400)
    sk = {d: kernel.new_state(d) for d in sorted({r.device_id for r in readings})}
    sr = {d: reference.new_state(d) for d in sk}
    for i in range(0, len(readings), 70):
        groups: dict[str, list[SensorReading]] = {}
        for r in readings[i : i + 70]:
            groups.setdefault(r.device_id, []).append(r)
        a = kernel.score_many([(sk[d], rs) for d, rs in groups.items()])
        b = reference.score_many([(sr[d], rs) for d, rs in groups.items()])
        assert _close([_results(x) for x in a], [_results(y) for y in b])
        assert kernel._kernel is not None and kernel._kernel.matrix is not None
    probs = [s.failure_prob for res in a for s in res]
    assert any(p is not None and p > 0.0 for p in probs)


def test_a_device_with_few_readings_in_the_batch_goes_to_the_reference():
    """The default hand-over (packing costs more than the kernel saves on 1-2 readings)."""
    scorer = Scorer()
    runner = scorer._kernel
    assert runner is not None and runner.min_readings == 3
    readings = [SensorReading("d", 1000.0 + i, i, {"x": 1.0}) for i in range(5)]
    state = scorer.new_state("d")
    scorer.score(state, readings[:2])
    assert (runner.compiled_devices, runner.reference_devices) == (0, 1)
    scorer.score(state, readings[2:])
    assert (runner.compiled_devices, runner.reference_devices) == (1, 1)


def test_rows_left_in_the_arrays_give_the_reference_failure_risk():
    """Without `keep_failure_rows` the kernel's rows stay in its arrays (`LAZY_ROW`): in a
    batch all its own they reach the failure model as one matrix, in a batch mixed with the
    reference's (a device with too few readings) as lists; the label buffer still gets each
    row it keeps. Risk, flags and states equal the reference's either way."""
    from edgeml.models.registry import load_promoted
    from edgeml.models.shipped import SHIPPED_ROOT

    model = load_promoted(SHIPPED_ROOT)
    kernel, reference = Scorer(failure_model=model), Scorer(failure_model=model, kernel="reference")
    assert kernel._kernel is not None and kernel._kernel.min_readings == 3
    readings = _sim(7, 4, 900)
    ids = sorted({r.device_id for r in readings})
    by = {d: [r for r in readings if r.device_id == d] for d in ids}
    sk = {d: kernel.new_state(d) for d in ids}
    sr = {d: reference.new_state(d) for d in ids}
    mixed = 0
    for start in range(0, 900, 30):
        # every fourth step one device sends only 2 readings: the reference takes it
        sizes = {d: (2 if (start // 30 + i) % 4 == 0 else 30) for i, d in enumerate(ids)}
        work_k = [(sk[d], by[d][start : start + sizes[d]]) for d in ids]
        work_r = [(sr[d], by[d][start : start + sizes[d]]) for d in ids]
        before = kernel._kernel.reference_devices
        out_k, out_r = kernel.score_many(work_k), reference.score_many(work_r)
        mixed += kernel._kernel.reference_devices > before
        assert _close([_results(r) for r in out_k], [_results(r) for r in out_r])
    assert mixed > 0 and kernel._kernel.compiled_devices > 0
    probs = [s.failure_prob for r in out_k if isinstance(r, list) for s in r]
    assert len({p for p in probs if p is not None}) > 1  # a real risk, not a constant
    for d in ids:
        assert sk[d].to_bytes() == sr[d].to_bytes()  # label buffers included
