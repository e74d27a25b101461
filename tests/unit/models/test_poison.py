"""Poison pills, re-deliveries and time outliers through `ReadingPipeline` (issue 9: 1, 4, 10).

One regression test per case the fault runs found: huge metric values, deeply nested JSON,
a poisoned or corrupt device state, an exception while scoring one device, re-delivered and
duplicated readings, a device that restarts its seq counter, and one reading far in the future.
"""

from __future__ import annotations

import random
from array import array

import numpy as np
import orjson
import pytest

from edgeml.models.detectors import DetectorStateError, ResidualDetector
from edgeml.models.pipeline import BatchResult, Inbound, Outbound, ReadingPipeline
from edgeml.models.scoring import DeviceState, ScoredReading, Scorer
from edgeml.models.stores import BytesStateStore
from edgeml.models.validation import ValidationLimits, parse_message
from edgeml.topics.records import SensorReading

NOW = 1_767_300_000.0


def _reading(device: str, seq: int, ts: float, value: float | None = None) -> dict[str, object]:
    noise = random.Random(seq)  # the same reading for the same seq: re-deliveries are copies
    if value is None:
        value = 20.0 + noise.gauss(0.0, 0.5)
    return {
        "device_id": device,
        "ts": ts,
        "seq": seq,
        "metrics": {"t": value, "u": 40.0 + noise.gauss(0.0, 1.0)},
    }


def _message(value: object, offset: int = 0) -> Inbound:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Inbound(f"m{offset}".encode(), raw, "sensor-readings", 0, offset)


def _role(outbound: list[Outbound], role: str) -> list[Outbound]:
    return [record for record in outbound if record.role == role]


def _error_classes(result: BatchResult) -> list[str]:
    return [
        dict(r.headers or [])["edgeml.error.class"].decode() for r in _role(result.outbound, "dlq")
    ]


def _pipeline(limits: ValidationLimits | None = None) -> ReadingPipeline:
    return ReadingPipeline(Scorer(), limits, clock=lambda: NOW)


def _warm(pipeline: ReadingPipeline, store: BytesStateStore, device: str, n: int = 400) -> None:
    start = NOW - 5000
    batch = [_message(_reading(device, i, start + i), i) for i in range(n)]
    result = pipeline.process(batch, store)
    assert result.readings == n and result.dead_letters == 0


def _scores(result: BatchResult) -> list[float]:
    return [o.anomaly_score for o in result.scored]


# --- huge values ------------------------------------------------------------------------------
def test_huge_values_go_to_the_dlq_and_normal_readings_keep_being_scored() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    _warm(pipeline, store, "a")
    start = NOW - 5000 + 400
    poison = [_message(_reading("a", 400 + i, start + i, 1e308), i) for i in range(20)]
    result = pipeline.process(poison, store)
    assert _error_classes(result) == ["OutOfRange"] * 20 and result.readings == 0
    normal = [_message(_reading("a", 420 + i, start + 20 + i), i) for i in range(100)]
    result = pipeline.process(normal, store)
    assert result.readings == 100 and result.dead_letters == 0
    assert max(_scores(result)) < 0.5  # the device's normal is intact


@pytest.mark.parametrize("value", [1e308, -1e308, 1e200, 1.3e154, 1e100])
def test_the_models_stay_finite_whatever_value_gets_past_validation(value: float) -> None:
    """Validation is the first bound; the Scorer on its own clamps (defence in depth)."""
    scorer = Scorer()
    state = scorer.new_state("a")
    start = NOW - 5000

    # every metric the failure model reads, so its probability is computed (and checked) too
    def metrics(i: int, t: float) -> dict[str, float]:
        return {"temperature": t, "humidity": 40.0 + i % 5, "pressure": 1000.0 + i % 7,
                "vibration": 0.3 + 0.01 * (i % 4)}  # fmt: skip

    scorer.score(
        state, [SensorReading("a", start + i, i, metrics(i, 20.0 + i % 3)) for i in range(300)]
    )
    huge = [SensorReading("a", start + 300 + i, 300 + i, metrics(i, value)) for i in range(20)]
    after = [SensorReading("a", start + 320 + i, 320 + i, metrics(i, 20.0)) for i in range(200)]
    out = scorer.score(state, huge) + scorer.score(state, after)
    assert len(out) == 220
    for scored in out:
        assert 0.0 <= scored.anomaly_score <= 1.0
        assert scored.failure_prob is not None and 0.0 <= scored.failure_prob <= 1.0
    assert out[0].is_anomaly  # the first huge value is flagged
    restored = DeviceState.from_bytes(state.to_bytes())
    assert restored.to_bytes() == state.to_bytes()


def test_a_huge_value_on_a_warmed_up_device_is_flagged_not_fatal() -> None:
    pipeline, store = _pipeline(ValidationLimits(max_abs_value=1e100)), BytesStateStore()
    _warm(pipeline, store, "a")
    result = pipeline.process([_message(_reading("a", 400, NOW - 4600, 1e100))], store)
    assert result.readings == 1 and result.scored[0].is_anomaly
    assert result.scored[0].anomaly_score <= 1.0
    result = pipeline.process(
        [_message(_reading("a", 401 + i, NOW - 4599 + i), i) for i in range(50)], store
    )
    assert result.readings == 50 and result.scoring_errors == 0


def test_validation_bounds_seq_and_sent_at() -> None:
    limits = ValidationLimits()
    good = _reading("a", 1, NOW - 1)
    cases = [
        ({**good, "seq": 2**63}, "OutOfRange"),
        ({**good, "sent_at": 1e300}, "OutOfRange"),
        ({**good, "metrics": {"t": -1e13}}, "OutOfRange"),
    ]
    for value, error_class in cases:
        parsed = parse_message(orjson.dumps(value), NOW, limits)
        assert [r.error_class for r in parsed.rejections] == [error_class], value
    assert parse_message(orjson.dumps({**good, "seq": 2**63 - 1}), NOW, limits).readings
    with pytest.raises(ValueError, match="max_abs_value"):
        ValidationLimits(max_abs_value=1e200)


def test_the_detector_refuses_a_poisoned_metric_state() -> None:
    detector = ResidualDetector()
    s = detector.new_metric_state(1.0)
    s[2] = 1e308  # the slow mean of a state written before values were bounded
    with pytest.raises(DetectorStateError):
        detector.score_one(s, 1.0)


# --- undecodable input --------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1_025, 3_000, 5_000])
def test_deeply_nested_json_is_a_dead_letter_and_the_rest_is_scored(depth: int) -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    deep = b"[" * depth + b"]" * depth
    # a NaN token sends it to the stdlib parser too, which recursed into a RecursionError
    deep_nan = b'{"b": ' + b"[" * depth + b"]" * depth + b', "a": NaN}'
    batch = [_message(deep, 0), _message(_reading("a", 0, NOW - 10), 1), _message(deep_nan, 2)]
    result = pipeline.process(batch, store)
    assert _error_classes(result) == ["InvalidJson", "InvalidJson"]
    assert result.readings == 1 and [r.key for r in _role(result.outbound, "predictions")] == [
        b"m1"
    ]


def test_an_envelope_item_too_deep_to_write_back_dead_letters_the_whole_message() -> None:
    item = b"[" * 300 + b"]" * 300  # orjson reads 1,024 levels but writes 254
    raw = b'{"readings": [' + orjson.dumps(_reading("a", 0, NOW - 10)) + b", " + item + b"]}"
    result = _pipeline().process([_message(raw)], BytesStateStore())
    (letter,) = _role(result.outbound, "dlq")
    assert letter.value == raw and result.readings == 1
    assert dict(letter.headers or [])["edgeml.batch.index"] == b"1"


# --- failures while scoring one device ---------------------------------------------------------
def test_a_poisoned_state_dead_letters_that_device_only_and_it_recovers() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    _warm(pipeline, store, "a")
    _warm(pipeline, store, "b")
    poisoned = DeviceState.from_bytes(store.data["a"])
    poisoned.detectors["t"][2] = 1e308  # what 1e308 readings left behind before the fix
    store.data["a"] = poisoned.to_bytes()
    batch = [
        _message(_reading("a", 400, NOW - 4600), 0),
        _message({"readings": [_reading("b", 400, NOW - 4600), _reading("a", 401, NOW - 4599)]}, 1),
        _message(_reading("b", 401, NOW - 4599), 2),
    ]
    result = pipeline.process(batch, store)
    assert result.scoring_errors == 1 and result.dead_letters == 2
    letters = _role(result.outbound, "dlq")
    first, second = (dict(letter.headers or []) for letter in letters)
    assert first["edgeml.error.class"] == b"ScoringError"
    assert b"DetectorStateError" in first["edgeml.error.reason"]
    assert letters[0].value == batch[0].value
    assert second["edgeml.batch.index"] == b"1" and orjson.loads(letters[1].value)["seq"] == 401
    assert [(o.reading.device_id, o.reading.seq) for o in result.scored] == [("b", 400), ("b", 401)]
    fresh = DeviceState.from_bytes(store.data["a"])
    assert (fresh.seq, fresh.n, fresh.detectors) == (401, 0, {})
    # the dead-lettered readings, re-delivered, are recognised; new ones are scored
    again = pipeline.process([batch[0]], store)
    assert again.redelivered == 1 and again.outbound == []
    later = pipeline.process(
        [_message(_reading("a", 402 + i, NOW - 4598 + i), i) for i in range(80)], store
    )
    assert later.readings == 80 and later.scoring_errors == 0


def test_a_state_that_does_not_load_is_replaced_and_counted() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    store.data["a"] = b"EDS2\xff\xff\xff\x00garbage"
    store.data["b"] = b"\x00"
    batch = [_message(_reading("a", 0, NOW - 10), 0), _message(_reading("b", 0, NOW - 10), 1)]
    result = pipeline.process(batch, store)
    assert result.state_errors == 2 and result.readings == 2
    assert DeviceState.from_bytes(store.data["a"]).seq == 0


def test_an_exception_in_one_device_keeps_the_failure_model_call_for_the_others() -> None:
    calls: list[int] = []

    class CountingModel:
        ref = "failure-gbm@1"

        def predict(self, features: np.ndarray) -> np.ndarray:
            calls.append(len(features))
            return np.full(len(features), 0.25)

    class FailingFor(Scorer):
        def _score_one(
            self, state: DeviceState, reading: SensorReading
        ) -> tuple[ScoredReading, list[float]]:
            if reading.device_id == "bad":
                raise RuntimeError("boom")
            return super()._score_one(state, reading)

    pipeline = ReadingPipeline(FailingFor(failure_model=CountingModel()), clock=lambda: NOW)
    full = {"temperature": 20.0, "humidity": 40.0, "pressure": 1000.0, "vibration": 0.3}
    batch = [
        _message({"device_id": d, "ts": NOW - 10, "seq": 0, "metrics": full}, i)
        for i, d in enumerate(["x", "bad", "y"])
    ]
    result = pipeline.process(batch, BytesStateStore())
    assert calls == [2] and result.scoring_errors == 1
    assert [o.failure_prob for o in result.scored] == [0.25, 0.25]
    (letter,) = _role(result.outbound, "dlq")
    assert dict(letter.headers or [])["edgeml.error.reason"] == b"RuntimeError: boom"


# --- re-deliveries and duplicates ---------------------------------------------------------------
def test_redelivered_readings_are_not_learned_counted_late_or_predicted_again() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    start = NOW - 5000
    first = [_message(_reading("a", i, start + i), i) for i in range(300)]
    pipeline.process(first, store)
    snapshot = store.data["a"]
    result = pipeline.process(first[200:], store)  # a crash re-delivers the last 100
    assert (result.redelivered, result.readings, result.late) == (100, 0, 0)
    assert result.outbound == [] and store.data["a"] == snapshot


def test_duplicates_inside_one_batch_are_scored_once() -> None:
    pipeline = _pipeline()
    one = _reading("a", 5, NOW - 10)
    envelope = {"readings": [one, _reading("a", 6, NOW - 9), one]}
    result = pipeline.process([_message(one, 0), _message(envelope, 1)], BytesStateStore())
    assert result.redelivered == 2 and result.readings == 2
    (single, batched) = (orjson.loads(r.value) for r in _role(result.outbound, "predictions"))
    assert single["seq"] == 5 and [p["seq"] for p in batched["predictions"]] == [6]


def test_a_counter_restart_with_newer_event_time_is_scored() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    start = NOW - 5000
    pipeline.process([_message(_reading("a", 1000 + i, start + i), i) for i in range(100)], store)
    result = pipeline.process(
        [_message(_reading("a", i, start + 100 + i), i) for i in range(50)], store
    )
    assert result.readings == 50 and result.redelivered == 0 and result.late == 0
    assert DeviceState.from_bytes(store.data["a"]).seq == 49


def _old_format(state: DeviceState, magic: bytes) -> bytes:
    """`state` written as EDS1/EDS2 did: 10 floats per metric, no seasonal profiles, no
    calibration (and for EDS1 no seq mark, nothing held)."""
    fheader, floats = state.features.dump()
    if magic == b"EDS1":
        fheader = {k: v for k, v in fheader.items() if k != "j"}
    names = list(state.detectors)
    for name in names:
        floats.extend(state.detectors[name][:10])
    floats.extend(state.threshold)
    width = len(state.rows[0]) - 1 if state.rows else 0
    f32: list[float] = []
    for row in state.rows:
        floats.append(row[0])
        f32.extend(row[1:])
    floats.append(state.last_row_ts)
    header = {
        "id": state.device_id, "n": state.n, "f": fheader, "d": names,
        "t": len(state.threshold), "r": [len(state.rows), width, len(floats)],
        "a": state.alert.to_obj(),
    }  # fmt: skip
    if magic == b"EDS2":
        header["s"] = [state.seq, state.seq_ts]
    head = orjson.dumps(header)
    return b"".join(
        (magic, len(head).to_bytes(4, "little"), head,
         array("d", floats).tobytes(), array("f", f32).tobytes())
    )  # fmt: skip


@pytest.mark.parametrize("magic", [b"EDS1", b"EDS2"])
def test_states_of_the_previous_formats_still_load(magic: bytes) -> None:
    scorer = Scorer()
    state = scorer.new_state("a")
    scorer.score(
        state, [SensorReading("a", NOW - 100 + i, i, {"t": 1.0 + i % 2}) for i in range(90)]
    )
    restored = DeviceState.from_bytes(_old_format(state, magic))
    if magic == b"EDS1":
        assert (restored.seq, restored.features.gap) == (-1, 0.0)
    else:
        assert restored.seq == state.seq == 89
    # the two slots EDS3 added per metric (resolution, hold start) start unknown
    assert restored.detectors == {k: [*v[:10], 0.0, 0.0] for k, v in state.detectors.items()}
    assert restored.threshold == state.threshold and restored.rows == state.rows
    assert restored.seasons == {} and restored.calib == scorer.new_state("a").calib
    before = {k: list(v) for k, v in restored.detectors.items()}
    scorer.score(restored, [SensorReading("a", NOW - 10, 90, {"t": 1.0})])
    assert restored.detectors["t"][4] == before["t"][4] + 1  # learned on, not restarted
    assert set(restored.seasons) == {"t"}


# --- time outliers ------------------------------------------------------------------------------
def test_one_reading_far_in_the_future_does_not_make_the_next_ones_late() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    start = NOW - 4000
    pipeline.process([_message(_reading("a", i, start + i), i) for i in range(300)], store)
    future = pipeline.process([_message(_reading("a", 300, start + 300 + 3000))], store)
    assert future.readings == 1 and future.late == 0
    following = [_message(_reading("a", 301 + i, start + 301 + i), i) for i in range(300)]
    # a spike in the middle must still open an alert (alerts are not suppressed)
    following[150] = _message(_reading("a", 451, start + 451, 80.0), 150)
    result = pipeline.process(following, store)
    assert result.late == 0 and result.readings == 300 and _role(result.outbound, "late") == []
    assert [a for a in _role(result.outbound, "alerts") if orjson.loads(a.value)["state"] == "open"]
    assert DeviceState.from_bytes(store.data["a"]).watermark == start + 600


def test_two_readings_that_agree_on_a_jump_move_the_watermark() -> None:
    pipeline, store = _pipeline(), BytesStateStore()
    start = NOW - 4000
    pipeline.process([_message(_reading("a", i, start + i), i) for i in range(100)], store)
    back = start + 100 + 2000  # the device was off for 2,000 s
    result = pipeline.process(
        [_message(_reading("a", 100 + i, back + i), i) for i in range(20)], store
    )
    assert result.readings == 20 and result.late == 0
    state = DeviceState.from_bytes(store.data["a"])
    assert state.watermark == back + 19
    late = pipeline.process([_message(_reading("a", 200, start + 100))], store)
    assert late.late == 1
