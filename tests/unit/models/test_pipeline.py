"""ReadingPipeline: the worker's per-batch logic, with an in-memory state store."""

from __future__ import annotations

import orjson
import pytest

from edgeml.models.pipeline import Inbound, Outbound, ReadingPipeline
from edgeml.models.scoring import Scorer
from edgeml.models.stores import BytesStateStore
from edgeml.sim.generator import SimConfig, simulate

NOW = 1_767_300_000.0


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer()


def _reading(device: str, seq: int, ts: float, value: float = 20.0) -> dict[str, object]:
    return {"device_id": device, "ts": ts, "seq": seq, "metrics": {"temperature": value}}


def _message(value: object, offset: int = 0, partition: int = 0) -> Inbound:
    return Inbound(b"k", orjson.dumps(value), "sensor-readings", partition, offset)


def _by_role(outbound: list[Outbound], role: str) -> list[Outbound]:
    return [record for record in outbound if record.role == role]


def test_one_prediction_per_reading_shaped_like_its_message(scorer: Scorer) -> None:
    pipeline = ReadingPipeline(scorer, clock=lambda: NOW)
    batch = [
        _message(_reading("a", 0, NOW - 10)),
        _message({"readings": [_reading("b", 0, NOW - 10), _reading("a", 1, NOW - 9)]}, 1),
    ]
    result = pipeline.process(batch, BytesStateStore())
    single, envelope = (orjson.loads(r.value) for r in _by_role(result.outbound, "predictions"))
    assert (single["device_id"], single["seq"]) == ("a", 0)
    assert [(p["device_id"], p["seq"]) for p in envelope["predictions"]] == [("b", 0), ("a", 1)]
    assert result.readings == 3 and result.dead_letters == 0
    assert single["scored_at"] == NOW and single["threshold"] == pytest.approx(0.5)
    # a temperature-only device is outside the failure model's schema: null, with the reason,
    # and only the anomaly model is named
    assert single["models"] == {"anomaly": scorer.model_ids["anomaly"]}
    assert single["failure_prob"] is None
    assert single["failure_reason"] == "no humidity, pressure, vibration in the reading"


def test_bad_readings_become_dead_letters_with_origin_and_reason(scorer: Scorer) -> None:
    pipeline = ReadingPipeline(scorer, clock=lambda: NOW)
    bad = {"device_id": "a", "ts": NOW, "seq": "one", "metrics": {"t": 1.0}}
    batch = [
        Inbound(b"k", b"{oops", "sensor-readings", 2, 41),
        _message({"readings": [_reading("a", 0, NOW), bad]}, offset=42, partition=2),
    ]
    result = pipeline.process(batch, BytesStateStore())
    letters = _by_role(result.outbound, "dlq")
    assert result.dead_letters == 2 and len(letters) == 2
    first, second = (dict(letter.headers or []) for letter in letters)
    assert letters[0].value == b"{oops"
    assert first["edgeml.error.class"] == b"InvalidJson"
    assert (first["edgeml.origin.partition"], first["edgeml.origin.offset"]) == (b"2", b"41")
    assert second["edgeml.error.class"] == b"WrongType" and second["edgeml.batch.index"] == b"1"
    assert orjson.loads(letters[1].value) == bad
    (prediction,) = _by_role(result.outbound, "predictions")
    assert len(orjson.loads(prediction.value)["predictions"]) == 1


def test_state_carries_across_batches_as_in_one_batch(scorer: Scorer) -> None:
    sim = simulate(SimConfig(devices=3, count=300, seed=4, incident_every=60, warmup=60))
    messages = [_message(r.to_wire(), i) for i, r in enumerate(sim.readings())]
    scores = []
    for size in (1, 7, len(messages)):
        pipeline = ReadingPipeline(Scorer(), clock=lambda: NOW)
        store = BytesStateStore()
        outcomes = []
        for start in range(0, len(messages), size):
            outcomes += pipeline.process(messages[start : start + size], store).scored
        scores.append(
            sorted((o.reading.device_id, o.reading.seq, o.anomaly_score) for o in outcomes)
        )
    assert scores[0] == scores[1] == scores[2]
    assert any(score > 0.5 for _, _, score in scores[0])


def test_late_readings_are_scored_flagged_and_copied(scorer: Scorer) -> None:
    pipeline = ReadingPipeline(scorer, clock=lambda: NOW)
    store = BytesStateStore()
    pipeline.process([_message(_reading("a", i, NOW - 100 + i)) for i in range(50)], store)
    result = pipeline.process([_message(_reading("a", 50, NOW - 100))], store)
    assert result.late == 1
    (late,) = _by_role(result.outbound, "late")
    assert orjson.loads(late.value)["seq"] == 50
    (prediction,) = _by_role(result.outbound, "predictions")
    assert orjson.loads(prediction.value)["late"] is True


def _history(device: str, start: float, n: int, spike_at: int) -> list[dict[str, object]]:
    rng = [20.0 + 0.1 * ((i * 7919) % 11) for i in range(n)]
    rng[spike_at] = 60.0
    return [_reading(device, i, start + i, rng[i]) for i in range(n)]


def _predictions_of(result: object, device: str) -> list[tuple[int, float, bool]]:
    out = []
    for o in _by_role(result.outbound, "predictions"):  # type: ignore[attr-defined]
        p = orjson.loads(o.value)
        if p["device_id"] == device:
            out.append((p["seq"], p["anomaly_score"], p["is_anomaly"]))
    return out


def test_a_device_replaying_old_history_is_scored_the_same_beside_live_devices() -> None:
    """Idle is judged per device in its own event time (issue #11, item 7): a device replaying
    history a day old, on a partition where another device sends live readings, is never
    expired while it sends, and its predictions and alerts equal those of the replay alone,
    whatever the wall clock does."""
    old = _history("old", NOW - 86400, 400, spike_at=300)
    live = [_reading("live", i, NOW - 400 + i) for i in range(400)]
    alone_store, shared_store = BytesStateStore(), BytesStateStore()
    ticks = iter(range(10**6))
    alone = ReadingPipeline(Scorer(), clock=lambda: NOW)
    shared = ReadingPipeline(Scorer(), clock=lambda: NOW + 1000.0 * next(ticks))
    alone_out, shared_out = [], []
    alone_alerts, shared_alerts = [], []
    for i in range(0, 400, 50):
        a = alone.process([_message(r, n) for n, r in enumerate(old[i : i + 50])], alone_store)
        mixed = [m for pair in zip(old[i : i + 50], live[i : i + 50], strict=True) for m in pair]
        b = shared.process([_message(r, n) for n, r in enumerate(mixed)], shared_store)
        alone_out += _predictions_of(a, "old")
        shared_out += _predictions_of(b, "old")
        alone_alerts += [(x.state, x.alert_id) for x in a.alert_events if x.device_id == "old"]
        shared_alerts += [(x.state, x.alert_id) for x in b.alert_events if x.device_id == "old"]
    assert len(alone_out) == 400 and shared_out == alone_out
    assert ("open", "old:300") in alone_alerts and shared_alerts == alone_alerts


def test_malformed_maintenance_events_are_dead_lettered(scorer: Scorer) -> None:
    pipeline = ReadingPipeline(scorer, clock=lambda: NOW)
    out = pipeline.learn_maintenance(
        _message({"device_id": "a", "kind": "exploded"}), BytesStateStore()
    )
    assert [o.role for o in out] == ["dlq"]
    ok = {"device_id": "a", "ts": NOW - 5, "kind": "failure"}
    assert pipeline.learn_maintenance(_message(ok), BytesStateStore()) == []
