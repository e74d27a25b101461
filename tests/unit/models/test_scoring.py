"""The Scorer end to end on simulated devices: state round trips, replay == live, late readings,
idle devices, delayed maintenance labels, and detection quality on a small fleet."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgeml.models.scoring import DeviceState, ScoredReading, Scorer
from edgeml.sim.evaluation import AlertRecord, alert_precision, detections
from edgeml.sim.generator import SimConfig, Simulation, simulate
from edgeml.topics.records import MaintenanceEvent, SensorReading


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SimConfig(devices=3, count=2500, seed=11))


@pytest.fixture(scope="module")
def readings(sim: Simulation) -> list[SensorReading]:
    return list(sim.readings())


def _scorer() -> Scorer:
    return Scorer()


def _key(s: ScoredReading) -> tuple[object, ...]:
    return (s.reading.seq, s.anomaly_score, s.failure_prob, s.is_anomaly, s.late, s.alerts)


def _by_device(readings: list[SensorReading]) -> dict[str, list[SensorReading]]:
    out: dict[str, list[SensorReading]] = {}
    for r in readings:
        out.setdefault(r.device_id, []).append(r)
    return out


def test_replay_in_any_batching_equals_live(readings: list[SensorReading]):
    """One at a time (live), per-device batches, and multi-device score_many: identical."""
    live, batched, many = _scorer(), _scorer(), _scorer()
    ids = sorted({r.device_id for r in readings})
    s_live = {d: live.new_state(d) for d in ids}
    s_batch = {d: batched.new_state(d) for d in ids}
    s_many = {d: many.new_state(d) for d in ids}
    out_live = [live.score(s_live[r.device_id], [r])[0] for r in readings]
    out_batch: list[ScoredReading] = []
    out_many: list[ScoredReading] = []
    rng = np.random.default_rng(0)
    i = 0
    while i < len(readings):
        chunk = readings[i : i + int(rng.integers(1, 40))]
        i += len(chunk)
        groups = _by_device(chunk)
        for d, rs in groups.items():
            out_batch.extend(batched.score(s_batch[d], rs))
        for res in many.score_many([(s_many[d], rs) for d, rs in groups.items()]):
            out_many.extend(res)
    key = lambda s: (s.reading.device_id, s.reading.seq)  # noqa: E731
    want = {key(s): _key(s) for s in out_live}
    assert {key(s): _key(s) for s in out_batch} == want
    assert {key(s): _key(s) for s in out_many} == want
    for d in ids:
        assert s_live[d].to_bytes() == s_batch[d].to_bytes() == s_many[d].to_bytes()


def test_state_round_trip_gives_identical_future_scores(readings: list[SensorReading]):
    dev = _by_device(readings)["dev-0001"]
    scorer = _scorer()
    state = scorer.new_state("dev-0001")
    scorer.score(state, dev[:1500])
    data = state.to_bytes()
    assert len(data) < 64 * 1024
    restored = DeviceState.from_bytes(data)
    assert restored.to_bytes() == data
    a = scorer.score(state, dev[1500:])
    b = scorer.score(restored, dev[1500:])
    assert [_key(s) for s in a] == [_key(s) for s in b]


def test_from_bytes_rejects_other_data():
    with pytest.raises(ValueError, match="not a DeviceState"):
        DeviceState.from_bytes(b"XXXX\x00\x00\x00\x00")


def test_late_reading_is_scored_flagged_and_leaves_state_alone(readings: list[SensorReading]):
    dev = _by_device(readings)["dev-0002"][:400]
    scorer = _scorer()
    state = scorer.new_state("dev-0002")
    scorer.score(state, dev)
    before = state.to_bytes()
    mark = (state.seq, state.seq_ts)
    old = dev[100]
    late = SensorReading(old.device_id, old.ts, 9999, {**old.metrics, "new_metric": 1.0})
    (scored,) = scorer.score(state, [late])
    assert scored.late and scored.alerts == []
    assert 0.0 <= scored.anomaly_score <= 1.0
    # only the re-delivery mark moves (so a re-delivered copy is recognised), nothing else
    assert (state.seq, state.seq_ts) == (9999, old.ts)
    state.seq, state.seq_ts = mark
    assert state.to_bytes() == before


def test_a_device_back_from_silence_resolves_its_open_alert(readings: list[SensorReading]):
    dev = _by_device(readings)["dev-0003"][:400]
    scorer = _scorer()
    state = scorer.new_state("dev-0003")
    scorer.score(state, dev)
    last = dev[-1]
    spike = SensorReading(last.device_id, last.ts + 1, last.seq + 1, {"temperature": 500.0})
    (scored,) = scorer.score(state, [spike])
    assert [a.state for a in scored.alerts] == ["open"]
    back = spike.ts + scorer.config.features.idle_timeout_s + 60
    # ordinary values (earlier ones of the same device), not a repeat of the last
    first, second = dict(dev[-60].metrics), dict(dev[-30].metrics)
    # one reading far ahead alone is held (it may be a clock glitch): the incident stays open
    (held,) = scorer.score(state, [SensorReading("dev-0003", back, spike.seq + 1, first)])
    assert held.alerts == [] and state.alert.open
    # a second reading confirms the silence: resolved at the last event before it
    (confirmed,) = scorer.score(state, [SensorReading("dev-0003", back + 1, spike.seq + 2, second)])
    (resolved,) = [a for a in confirmed.alerts if a.state == "resolved"]
    assert resolved.alert_id == scored.alerts[0].alert_id and resolved.ts == spike.ts
    # (what comes after the silence is scored as itself: it may open an incident of its own)
    assert not state.alert.open or state.alert.alert_id != resolved.alert_id


def test_maintenance_labels_train_the_online_model(readings: list[SensorReading]):
    scorer = _scorer()
    dev = _by_device(readings)["dev-0001"]
    state = scorer.new_state("dev-0001")
    scorer.score(state, dev[:900])
    assert len(state.rows) > 5
    fail_ts = dev[899].ts + 1
    scorer.learn_maintenance(MaintenanceEvent("dev-0001", fail_ts, "failure"))  # queued
    assert scorer.online.positives == 0
    scorer.score(state, dev[900:901])  # applied at the device's next batch
    assert scorer.online.positives > 0 and scorer.online.failures == 1
    assert all(r[0] >= fail_ts for r in state.rows)


def test_detects_simulated_incidents_with_one_alert_each(sim: Simulation):
    scorer = _scorer()
    states = {d.device_id: scorer.new_state(d.device_id) for d in sim.devices}
    alerts: list[AlertRecord] = []
    for event in sim.events():
        if isinstance(event, MaintenanceEvent):
            scorer.learn_maintenance(event, states[event.device_id])
            continue
        for s in scorer.score(states[event.device_id], [event]):
            alerts.extend(AlertRecord(a.device_id, a.ts, a.state) for a in s.alerts)
    found = detections(sim.incidents, alerts)
    assert sum(v is not None for v in found.values()) / len(found) >= 0.85
    assert (alert_precision(sim.incidents, alerts) or 0.0) >= 0.8
    opens = Counter(a.state for a in alerts)
    # every alert resolves once its device is back to normal: one still open at the end of the
    # run belongs to a device whose incident (or repair) ended in the run's last minute (this
    # seed ends three incidents within 45 s of its last reading)
    end = max(r.ts for r in sim.readings())
    still_open = {a.device_id for a in alerts if a.state == "open"} - {
        d
        for d in {a.device_id for a in alerts}
        if [x.state for x in alerts if x.device_id == d][-1] == "resolved"
    }
    recent = {i.device_id for i in sim.incidents if i.end_ts >= end - 60.0}
    assert still_open <= recent, (still_open, recent)
    assert opens["open"] <= 1.5 * len(sim.incidents)


def test_metric_budget_and_churn_keep_the_state_small():
    scorer = _scorer()
    state = scorer.new_state("d")
    t0 = 1_767_225_600.0
    wide = {f"m{i}": float(i) for i in range(50)}
    for i in range(100):
        scorer.score(state, [SensorReading("d", t0 + i, i, dict(wide))])
    assert len(state.features.metrics) == scorer.config.features.max_metrics
    assert len(state.detectors) <= scorer.config.features.max_metrics
    # a device that keeps renaming its metrics: old ones go idle and are forgotten
    for i in range(100, 4000):
        name = f"renamed-{i // 700}"
        scorer.score(state, [SensorReading("d", t0 + i, i, {name: float(i % 7)})])
    assert len(state.detectors) <= scorer.config.features.max_metrics
    assert len(state.to_bytes()) < 64 * 1024


class _Reversed:
    """A failure model whose manifest lists the default inputs in reverse order."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from edgeml.models.failure import failure_inputs

        self.manifest = SimpleNamespace(inputs=list(reversed(failure_inputs())))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.zeros(len(features))


def test_labels_are_learned_in_the_order_the_model_predicts_on(readings: list[SensorReading]):
    """The online model learns rows as `_fill_failure` predicts on them: clipped and in the
    model's input order, whatever order the manifest lists (it once learned canonical rows
    under reversed names)."""
    scorer = Scorer(failure_model=_Reversed())
    assert scorer.failure_inputs.names == scorer.online.names != tuple(sorted(scorer.online.names))
    learned: list[list[float]] = []
    scorer.online.learn_many = lambda rows, labels: learned.extend(rows)  # type: ignore[method-assign]
    dev = _by_device(readings)["dev-0001"]
    state = scorer.new_state("dev-0001")
    scorer.score(state, dev[:900])
    canonical = [r[1:] for r in state.rows]
    learned.clear()  # rows aged out as negatives while scoring went the same way
    scorer.learn_maintenance(MaintenanceEvent("dev-0001", dev[899].ts + 1, "failure"), state)
    assert canonical and len(learned) == len(canonical)
    expected = scorer.failure_inputs.matrix(canonical).astype(np.float64)
    np.testing.assert_array_equal(np.array(learned), expected)
    assert not np.array_equal(expected, np.asarray(canonical, dtype=np.float64))
