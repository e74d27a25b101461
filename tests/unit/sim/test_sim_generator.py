"""The simulator: deterministic, realistic enough, and every fault kind present and labelled."""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson
import pytest

from edgeml.sim.generator import METRICS, SimConfig, simulate
from edgeml.sim.truth import FAULT_KINDS, GroundTruth
from edgeml.topics.records import MaintenanceEvent, SensorReading

FLEET = SimConfig(devices=12, count=4000, seed=7, incident_every=600.0)


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    return simulate(FLEET)


def _wire(config: SimConfig) -> bytes:
    return b"\n".join(orjson.dumps(e.to_wire()) for e in simulate(config).events())


def test_same_seed_same_bytes() -> None:
    config = SimConfig(devices=3, count=900, seed=42)
    assert _wire(config) == _wire(config)
    gt_a = b"".join(simulate(config).ground_truth().lines())
    gt_b = b"".join(simulate(config).ground_truth().lines())
    assert gt_a == gt_b


def test_other_seed_other_bytes() -> None:
    assert _wire(SimConfig(devices=2, count=300, seed=1)) != _wire(
        SimConfig(devices=2, count=300, seed=2)
    )


def test_device_does_not_depend_on_fleet_size() -> None:
    small = simulate(SimConfig(devices=2, count=500, seed=3))
    large = simulate(SimConfig(devices=5, count=500, seed=3))
    np.testing.assert_array_equal(small.values[1], large.values[1])


def test_readings_shape(fleet) -> None:  # type: ignore[no-untyped-def]
    readings = list(fleet.readings())
    assert len(readings) == FLEET.devices * FLEET.count
    by_device: dict[str, list[SensorReading]] = {}
    for r in readings:
        by_device.setdefault(r.device_id, []).append(r)
        assert set(r.metrics) == set(METRICS)
        assert all(math.isfinite(v) for v in r.metrics.values())
        assert r.site and r.device_type and r.sent_at is None
    assert len(by_device) == FLEET.devices
    for rs in by_device.values():
        assert [r.seq for r in rs] == list(range(FLEET.count))
        gaps = np.diff([r.ts for r in rs])
        assert np.all(gaps > 0.85 * FLEET.interval)
        assert np.all(gaps < 1.15 * FLEET.interval)
        assert rs[0].ts >= FLEET.start_ts
        assert rs[-1].ts < FLEET.end_ts
    assert len({r.site for r in readings}) > 1


def test_events_in_event_time_order(fleet) -> None:  # type: ignore[no-untyped-def]
    ts = [e.ts for e in fleet.events()]
    assert ts == sorted(ts)


def test_every_fault_kind_present_and_labelled(fleet) -> None:  # type: ignore[no-untyped-def]
    kinds = {i.kind for i in fleet.incidents}
    assert kinds == set(FAULT_KINDS)
    for incident in fleet.incidents:
        assert incident.start_ts <= incident.end_ts
        assert incident.start_seq <= incident.end_seq
        assert set(incident.metrics) <= set(METRICS)
        assert incident.start_seq * FLEET.interval >= 300.0  # after warm-up
    by_device: dict[str, list] = {}
    for incident in fleet.incidents:
        by_device.setdefault(incident.device_id, []).append(incident)
    for incidents in by_device.values():  # incidents of one device never overlap
        for a, b in itertools.pairwise(incidents):
            assert a.end_seq < b.start_seq


def _window(fleet, incident, pad: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    k = int(incident.device_id.split("-")[1]) - 1
    m = METRICS.index(incident.metrics[0])
    return fleet.values[k, incident.start_seq - pad : incident.end_seq + 1 + pad, m]


def test_faults_are_visible_in_the_data(fleet) -> None:  # type: ignore[no-untyped-def]
    for incident in fleet.incidents:
        k = int(incident.device_id.split("-")[1]) - 1
        m = METRICS.index(incident.metrics[0])
        before = fleet.values[k, incident.start_seq - 120 : incident.start_seq, m]
        inside = fleet.values[k, incident.start_seq : incident.end_seq + 1, m]
        noise = max(float(np.std(np.diff(before))), 1e-3)
        if incident.kind == "stuck":
            assert np.ptp(inside) == 0.0
            assert np.ptp(before) > 0.0
        elif incident.kind == "spike":
            assert np.max(np.abs(inside - np.median(before))) > 3 * noise
        elif incident.kind == "noise_burst":
            assert np.std(np.diff(inside)) > 2 * noise
        elif incident.kind in ("level_shift", "drift"):
            assert abs(np.mean(inside[-5:]) - np.mean(before[-30:])) > 1.5 * noise


def test_degradation_fails_then_repairs(fleet) -> None:  # type: ignore[no-untyped-def]
    failures = [i for i in fleet.incidents if i.kind == "degradation"]
    assert failures
    events = {(e.device_id, e.kind, e.ts) for e in fleet.maintenance}
    assert len(fleet.maintenance) == 2 * len(failures)
    for incident in failures:
        assert incident.failure_ts is not None and incident.repair_ts is not None
        assert incident.start_ts < incident.failure_ts < incident.repair_ts
        assert incident.end_ts < incident.repair_ts
        assert (incident.device_id, "failure", incident.failure_ts) in events
        assert (incident.device_id, "repair", incident.repair_ts) in events
        k = int(incident.device_id.split("-")[1]) - 1
        ts = fleet.ts[k]
        f = int(np.searchsorted(ts, incident.failure_ts))
        vib = fleet.values[k, :, METRICS.index("vibration")]
        temp = fleet.values[k, :, METRICS.index("temperature")]
        base_vib = np.mean(vib[incident.start_seq - 60 : incident.start_seq])
        base_temp = np.mean(temp[incident.start_seq - 60 : incident.start_seq])
        assert np.mean(vib[f - 10 : f]) > 2.0 * base_vib  # rising before the failure
        assert np.mean(temp[f - 10 : f]) > base_temp + 4.0
        assert np.max(vib[f : incident.end_seq + 1]) < 0.2  # standing still
        after = vib[incident.end_seq + 1 : incident.end_seq + 31]
        assert 0.5 * base_vib < np.mean(after) < 1.5 * base_vib  # normal again


def test_maintenance_interleaved_in_event_time(fleet) -> None:  # type: ignore[no-untyped-def]
    events = list(fleet.events())
    positions = [i for i, e in enumerate(events) if isinstance(e, MaintenanceEvent)]
    assert positions and positions[0] > 0 and positions[-1] < len(events) - 1


def test_ground_truth_round_trip(fleet) -> None:  # type: ignore[no-untyped-def]
    truth = fleet.ground_truth(malformed_by_kind={"bad_json": 2}, run_started_at=123.5)
    parsed = GroundTruth.parse(list(truth.lines()))
    assert parsed == truth
    assert parsed.summary.readings == FLEET.devices * FLEET.count
    assert parsed.summary.malformed == 2
    assert len(parsed.failures) == sum(1 for i in fleet.incidents if i.kind == "degradation")


def test_compressed_day_shows_the_cycle() -> None:
    sim = simulate(SimConfig(devices=1, count=1200, seed=5, day_seconds=600.0, fault_kinds=()))
    temp = sim.values[0, :, METRICS.index("temperature")]
    assert sim.incidents == ()
    assert np.ptp(np.convolve(temp, np.ones(30) / 30, mode="valid")) > 2.0


@pytest.mark.parametrize(
    "kwargs",
    [{"devices": 0}, {"count": 0}, {"interval": 0.0}, {"fault_kinds": ("meteor",)}],
)
def test_bad_config(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SimConfig(**kwargs)
