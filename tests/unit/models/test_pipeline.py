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
    assert single["models"] == scorer.model_ids and single["scored_at"] == NOW


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


def test_a_quiet_device_is_expired_against_its_partition_watermark(scorer: Scorer) -> None:
    clock = [NOW]
    pipeline = ReadingPipeline(scorer, clock=lambda: clock[0], sweep_every_s=0)
    store = BytesStateStore()
    pipeline.process([_message(_reading("quiet", i, NOW - 2000 + i)) for i in range(80)], store)
    assert "quiet" in pipeline._seen
    timeout = scorer.config.features.idle_timeout_s
    pipeline.process([_message(_reading("busy", 0, NOW - 2000 + 80 + timeout + 1))], store)
    assert "quiet" not in pipeline._seen


def test_malformed_maintenance_events_are_dead_lettered(scorer: Scorer) -> None:
    pipeline = ReadingPipeline(scorer, clock=lambda: NOW)
    out = pipeline.learn_maintenance(
        _message({"device_id": "a", "kind": "exploded"}), BytesStateStore()
    )
    assert [o.role for o in out] == ["dlq"]
    ok = {"device_id": "a", "ts": NOW - 5, "kind": "failure"}
    assert pipeline.learn_maintenance(_message(ok), BytesStateStore()) == []
