"""Property-based tests of `ReadingPipeline.process` (hypothesis, bounded for CI).

Whatever the input — arbitrary bytes, arbitrary JSON, readings with any finite or non-finite
numbers, timestamps, keys and metric names, duplicated and re-delivered — every message
yields predictions or dead letters (or is a counted re-delivery), every output is strict
JSON, every score is finite in [0, 1], and a state stored as bytes scores the future exactly
as the state object it came from.
"""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeml.models.pipeline import BatchResult, Inbound, ReadingPipeline
from edgeml.models.scoring import DeviceState, Scorer
from edgeml.models.stores import BytesStateStore
from edgeml.models.validation import ValidationLimits

NOW = 1_767_300_000.0
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ObjectStore:
    """States as objects, never serialized: the reference for the round trip."""

    def __init__(self) -> None:
        self.data: dict[str, DeviceState] = {}

    def load(self, device_id: str, origin: int) -> DeviceState | None:
        return self.data.get(device_id)

    def save(self, device_id: str, state: DeviceState, origin: int) -> None:
        self.data[device_id] = state


def _strict_json(raw: bytes) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(raw, parse_constant=refuse)


def _dumps(value: object) -> bytes:
    """JSON text with NaN/Infinity tokens where the value has them (orjson writes null)."""
    return json.dumps(value, allow_nan=True).encode()


# Subnormals off: onnxruntime, imported by other tests in the same process, sets the CPU to
# flush them to zero, and hypothesis refuses to generate them then.
floats = partial(st.floats, allow_subnormal=False)
numbers = st.one_of(
    floats(allow_nan=True, allow_infinity=True),
    floats(min_value=-100.0, max_value=100.0),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 1e200, 1.3e154, 1e12, 1e13, 5e-324]),
    st.integers(min_value=-(2**70), max_value=2**70),
)
names = st.one_of(st.sampled_from(["t", "u", "v"]), st.text(max_size=12))
devices = st.one_of(st.sampled_from(["d0", "d1", "d2"]), st.text(max_size=8))
timestamps = st.one_of(
    st.floats(min_value=NOW - 20_000, max_value=NOW + 5_000),
    floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
)
seqs = st.one_of(st.integers(min_value=0, max_value=50), st.integers(), floats())
readings = st.fixed_dictionaries(
    {
        "device_id": devices,
        "ts": timestamps,
        "seq": seqs,
        "metrics": st.dictionaries(names, numbers, min_size=0, max_size=4),
    },
    optional={
        "site": st.one_of(st.none(), st.text(max_size=8)),
        "sent_at": st.one_of(st.none(), numbers),
        "v": st.sampled_from([1, 2]),
    },
)
# mostly valid readings (any numbers, any metric names), so most examples reach the models
near_valid = st.fixed_dictionaries(
    {
        "device_id": st.sampled_from(["d0", "d1", "d2"]),
        "ts": st.floats(min_value=NOW - 12_000, max_value=NOW + 3_000),
        "seq": st.integers(min_value=0, max_value=60),
        "metrics": st.dictionaries(names, numbers, min_size=1, max_size=4),
    }
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.one_of(
    near_valid.map(_dumps),
    st.lists(near_valid, min_size=1, max_size=5).map(lambda rs: _dumps({"readings": rs})),
    near_valid.map(_dumps),
    st.binary(max_size=200),
    json_values.map(_dumps),
    readings.map(_dumps),
    st.lists(readings, min_size=1, max_size=5).map(lambda rs: _dumps({"readings": rs})),
    st.integers(min_value=1_025, max_value=6_000).map(lambda d: b"[" * d + b"]" * d),
)
keys = st.binary(max_size=8)


def _plain(device: str, seq: int, ts: float, value: float) -> bytes:
    return orjson.dumps({"device_id": device, "ts": ts, "seq": seq, "metrics": {"t": value}})


def _warm_up() -> list[Inbound]:
    """Devices d0 and d1 warmed up (past the detectors' warm-up), so numbers reach them."""
    return [
        Inbound(b"w", _plain(f"d{i % 2}", i // 2, NOW - 10_000 + i // 2, 20.0 + (i * 7 % 5)))
        for i in range(160)
    ]


def _check(result: BatchResult, batch: list[Inbound]) -> None:
    dlq_offsets = {
        int(dict(r.headers or [])["edgeml.origin.offset"])
        for r in result.outbound
        if r.role == "dlq"
    }
    predicted = 0
    for record in result.outbound:
        value = _strict_json(record.value) if record.role != "dlq" else None
        if record.role == "predictions":
            assert isinstance(value, dict)
            for p in value.get("predictions", [value]):
                predicted += 1
                assert 0.0 <= p["anomaly_score"] <= 1.0 and math.isfinite(p["anomaly_score"])
                if p["failure_prob"] is None:  # outside the failure model's schema: says why
                    assert p["failure_reason"] and "failure" not in p["models"]
                else:
                    assert 0.0 <= p["failure_prob"] <= 1.0 and math.isfinite(p["failure_prob"])
        elif record.role == "alerts":
            assert isinstance(value, dict) and 0.0 <= value["score"] <= 1.0
    assert predicted == result.readings == len(result.scored)
    answered = {_offset_of(r.key) for r in result.outbound if r.role == "predictions"}
    unanswered = [m for m in batch if m.offset not in dlq_offsets and m.offset not in answered]
    assert len(unanswered) <= result.redelivered  # the rest were all re-deliveries


def _numbered(values: list[bytes], keys_: list[bytes], first: int) -> list[Inbound]:
    """Messages at offsets `first`, ...; each key starts with its offset (to map outputs back)
    and ends with arbitrary bytes."""
    return [
        Inbound(b"%d|" % (first + i) + key, value, "sensor-readings", 0, first + i)
        for i, (value, key) in enumerate(zip(values, keys_, strict=False))
    ]


def _offset_of(key: bytes | None) -> int:
    assert key is not None
    return int(key.split(b"|", 1)[0])


@PROPERTY
@given(
    first=st.lists(payloads, min_size=1, max_size=6),
    second=st.lists(payloads, min_size=0, max_size=6),
    redeliver=st.booleans(),
    keys_=st.lists(keys, min_size=12, max_size=12),
    wide=st.booleans(),
)
def test_every_message_is_answered_and_every_output_is_valid(
    first: list[bytes], second: list[bytes], redeliver: bool, keys_: list[bytes], wide: bool
) -> None:
    # wide: validation lets values up to 1e100 through, so the models' own bounds are tested
    limits = ValidationLimits(max_abs_value=1e100) if wide else ValidationLimits()
    pipeline = ReadingPipeline(Scorer(), limits, clock=lambda: NOW)
    reference = ReadingPipeline(Scorer(), limits, clock=lambda: NOW)
    store, objects = BytesStateStore(), ObjectStore()
    warm = _warm_up()
    pipeline.process(warm, store)
    reference.process(warm, objects)
    batches = [_numbered(first, keys_[:6], 1000), _numbered(second, keys_[6:], 2000)]
    if redeliver:
        batches.append(batches[0])  # a crash re-delivers the first batch
    for batch in batches:
        result = pipeline.process(batch, store)
        expected = reference.process(batch, objects)
        _check(result, batch)
        assert result.outbound == expected.outbound  # bytes-stored state == object state
        assert result.scoring_errors == 0 and result.state_errors == 0
        for device_id, raw in store.data.items():
            assert DeviceState.from_bytes(raw).to_bytes() == raw, device_id


@PROPERTY
@given(
    values=st.lists(numbers, min_size=1, max_size=40), gap=floats(min_value=0.0, max_value=4_000.0)
)
def test_any_numbers_on_a_warm_device_give_finite_scores(values: list[Any], gap: float) -> None:
    """The models' bounds alone (validation at its widest): scores stay in [0, 1]."""
    limits = ValidationLimits(max_abs_value=1e100)
    pipeline = ReadingPipeline(Scorer(), limits, clock=lambda: NOW)
    store = BytesStateStore()
    pipeline.process(_warm_up(), store)
    start = NOW - 9_000 + gap
    batch = _numbered(
        [
            _dumps({"device_id": "d0", "ts": start + i, "seq": 500 + i, "metrics": {"t": v}})
            for i, v in enumerate(values)
        ],
        [b""] * len(values),
        0,
    )
    result = pipeline.process(batch, store)
    _check(result, batch)
    assert result.scoring_errors == 0
    after = [Inbound(b"d0", _plain("d0", 600 + i, start + 100 + i, 20.0)) for i in range(20)]
    assert pipeline.process(after, store).readings == 20
