"""`BatchResult`'s facts for observers (`origins`, `alert_events`, `rejections`) say exactly
what the published bytes say: observers read the facts, only the publisher reads `Outbound`.

Checked against the bytes here, once, so that no step of the worker has to parse them again.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from edgeml.models.pipeline import BatchResult, Inbound, ReadingPipeline, Rejected
from edgeml.models.scoring import DeviceState, ScoredReading, Scorer
from edgeml.models.stores import BytesStateStore
from edgeml.topics.records import SensorReading
from tests.unit.models.test_pipeline_properties import (
    NOW,
    PROPERTY,
    _warm_up,
    keys,
    payloads,
)


class FailingFor(Scorer):
    """A scorer whose scoring raises for one device (its readings become `ScoringError`s)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def _score_one(
        self, state: DeviceState, reading: SensorReading
    ) -> tuple[ScoredReading, list[float]]:
        if reading.device_id == self.device:
            raise RuntimeError("boom")
        return super()._score_one(state, reading)


def _headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers or ()}


def assert_facts_match_the_bytes(result: BatchResult, batch: list[Inbound]) -> None:
    """Every fact against the record it describes, in publishing order."""
    by_role: dict[str, list[Any]] = {"predictions": [], "alerts": [], "dlq": [], "late": []}
    for record in result.outbound:
        by_role[record.role].append(record)
    # each predictions record: one run of `origins`, all naming the message of the record's key
    assert len(result.origins) == len(result.scored)
    cursor, previous = 0, -1
    for record in by_role["predictions"]:
        value = orjson.loads(record.value)
        origin = result.origins[cursor]
        assert origin > previous and batch[origin].key == record.key  # one record per message
        for prediction in value.get("predictions", [value]):
            reading = result.scored[cursor].reading
            assert result.origins[cursor] == origin
            assert (prediction["device_id"], prediction["seq"]) == (reading.device_id, reading.seq)
            cursor += 1
        previous = origin
    assert cursor == len(result.scored)
    # alerts: the records are the ones sent, scored_at included
    assert [orjson.loads(r.value) for r in by_role["alerts"]] == [
        a.to_wire() for a in result.alert_events
    ]
    assert [r.key for r in by_role["alerts"]] == [a.device_id.encode() for a in result.alert_events]
    assert result.alerts == len(result.alert_events)
    # dead letters: origin message (partition, offset, key), class, reason and envelope index
    assert result.dead_letters == len(result.rejections) == len(by_role["dlq"])
    for rejected, letter in zip(result.rejections, by_role["dlq"], strict=True):
        headers, message = _headers(letter), batch[rejected.origin]
        assert int(headers["edgeml.origin.partition"]) == message.partition
        assert int(headers["edgeml.origin.offset"]) == message.offset
        assert letter.key == message.key
        assert headers["edgeml.error.class"] == rejected.error_class
        assert headers["edgeml.error.reason"] == rejected.reason
        assert headers.get("edgeml.batch.index") == (
            None if rejected.index is None else str(rejected.index)
        )


def _numbered(values: list[bytes], keys_: list[bytes], first: int) -> list[Inbound]:
    """Messages at offsets `first`, ... over partitions 0-2, each key unique (offset first)."""
    return [
        Inbound(b"%d|" % (first + i) + key, value, "sensor-readings", i % 3, first + i)
        for i, (value, key) in enumerate(zip(values, keys_, strict=False))
    ]


def _reading(device: str, seq: int, ts: float, value: float = 20.0) -> dict[str, Any]:
    return {"device_id": device, "ts": ts, "seq": seq, "metrics": {"t": value + seq % 3 / 10}}


def _message(key: bytes | None, value: Any, partition: int, offset: int) -> Inbound:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Inbound(key, raw, "sensor-readings", partition, offset)


def test_origins_name_the_message_each_reading_came_from() -> None:
    pipeline = ReadingPipeline(Scorer(), clock=lambda: NOW)
    envelope = {"readings": [_reading("dev-b", 1, NOW - 50), _reading("dev-c", 1, NOW - 50)]}
    batch = [
        _message(b"dev-a", _reading("dev-a", 1, NOW - 50), 0, 10),
        _message(b"gw-1", envelope, 1, 20),
        _message(b"dev-a", b"{not json", 0, 11),
        _message(b"dev-d", _reading("dev-d", 1, NOW - 50), 2, 30),
        _message(b"gw-1", {"readings": [_reading("dev-c", 2, NOW - 49), {"bad": 1}]}, 1, 21),
        _message(b"gw-1", {"readings": [_reading("dev-b", 2, NOW - 49)]}, 1, 22),
        _message(b"dev-a", _reading("dev-a", 2, NOW - 49), 0, 12),
    ]
    result = pipeline.process(batch, BytesStateStore())
    assert [(o.reading.device_id, origin) for o, origin in zip(result.scored, result.origins,
                                                                 strict=True)] == [
        ("dev-a", 0), ("dev-b", 1), ("dev-c", 1), ("dev-d", 3), ("dev-c", 4), ("dev-b", 5),
        ("dev-a", 6),
    ]  # fmt: skip
    assert [(r.origin, r.error_class, r.index) for r in result.rejections] == [
        (2, "InvalidJson", None),
        (4, "MissingField", 1),
    ]
    assert_facts_match_the_bytes(result, batch)


def test_redelivered_readings_have_no_origin_and_scoring_errors_keep_theirs() -> None:
    pipeline = ReadingPipeline(FailingFor("bad"), clock=lambda: NOW)
    store = BytesStateStore()
    first = [_message(b"a", _reading("a", 1, NOW - 50), 0, 0)]
    pipeline.process(first, store)
    readings = [_reading("bad", 1, NOW - 50), _reading("a", 2, NOW - 49), _reading("bad", 2, NOW)]
    batch = [
        first[0],  # re-delivered: suppressed, so neither scored nor given an origin
        _message(b"gw", {"readings": readings}, 0, 1),
        _message(b"bad", _reading("bad", 3, NOW - 48), 3, 2),
    ]
    result = pipeline.process(batch, store)
    assert result.redelivered == 1 and result.scoring_errors == 1
    assert [(o.reading.device_id, o.reading.seq) for o in result.scored] == [("a", 2)]
    assert result.origins == [1]
    assert result.rejections == [
        Rejected(1, "ScoringError", "RuntimeError: boom", 0),
        Rejected(1, "ScoringError", "RuntimeError: boom", 2),
        Rejected(2, "ScoringError", "RuntimeError: boom", None),
    ]
    assert_facts_match_the_bytes(result, batch)


def test_alert_events_are_the_alerts_sent_with_their_scored_at() -> None:
    clock = iter([NOW, NOW + 0.25] * 1000)
    pipeline = ReadingPipeline(Scorer(), clock=lambda: next(clock))
    store = BytesStateStore()
    warm = [_message(b"a", _reading("a", i, NOW - 3000 + i), 0, i) for i in range(200)]
    pipeline.process(warm, store)
    spike = [_message(b"a", _reading("a", 200 + i, NOW - 2800 + i, 1e4), 0, 200 + i)
             for i in range(5)]  # fmt: skip
    result = pipeline.process(spike, store)
    assert result.alert_events, "a spike after warm-up opens an incident"
    assert result.alert_events[0].state == "open"
    assert {a.scored_at for a in result.alert_events} == {NOW + 0.25}
    assert all(a.scored_at == 0.0 for o in result.scored for a in o.alerts)  # scorer's untouched
    assert_facts_match_the_bytes(result, spike)


@PROPERTY
@given(
    first=st.lists(payloads, min_size=1, max_size=6),
    second=st.lists(payloads, min_size=0, max_size=6),
    redeliver=st.booleans(),
    keys_=st.lists(keys, min_size=12, max_size=12),
)
def test_facts_match_the_bytes_for_any_input(
    first: list[bytes], second: list[bytes], redeliver: bool, keys_: list[bytes]
) -> None:
    pipeline = ReadingPipeline(FailingFor("d2"), clock=lambda: NOW)  # d2: ScoringErrors too
    store = BytesStateStore()
    pipeline.process(_warm_up(), store)
    batches = [_numbered(first, keys_[:6], 1000), _numbered(second, keys_[6:], 2000)]
    if redeliver:
        batches.append(batches[0])
    for batch in batches:
        assert_facts_match_the_bytes(pipeline.process(batch, store), batch)
