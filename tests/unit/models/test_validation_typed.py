"""The typed (msgspec) decoding path against the reference (orjson + per-field checks).

`parse_message` tries the typed path and falls back to `parse_message_reference`; the typed
path may only accept. These properties compare the two on arbitrary bytes, arbitrary JSON and
reading-shaped objects with wrong types, NaN/Infinity tokens, huge numbers, missing fields,
duplicate keys and unicode (lone surrogates included) device ids: every reading, rejection
reason, index and original must be the same, to the bit.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgeml.models.validation import (
    ParsedMessage,
    ValidationLimits,
    _parse_typed,
    parse_message,
    parse_message_reference,
)

NOW = 1_764_240_000.0
DEFAULT = ValidationLimits()
# small limits, so the bounds (ids, metrics, batch size, values) are crossed often
SMALL = ValidationLimits(
    max_message_bytes=4096,
    max_readings_per_message=4,
    max_metrics=3,
    max_id_length=6,
    max_abs_value=1e6,
    max_seq=1000,
)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _facts(parsed: ParsedMessage) -> tuple[Any, ...]:
    """Everything a caller can see, floats by their bits (-0.0 is not 0.0 here)."""
    readings = [
        (
            r.device_id,
            r.ts.hex(),
            r.seq,
            [(k, type(v).__name__, float(v).hex()) for k, v in r.metrics.items()],
            r.site,
            r.device_type,
            r.schema_version,
            None if r.sent_at is None else (type(r.sent_at).__name__, r.sent_at.hex()),
        )
        for r in parsed.readings
    ]
    rejections = [(r.error_class, r.reason, r.index, r.original) for r in parsed.rejections]
    return readings, rejections, parsed.batched, parsed.indices


def _mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` seven times in eight, so whole readings are often valid (the typed path runs)."""
    return st.integers(0, 7).flatmap(lambda i: other if i == 7 else valid)


def _assert_same(raw: bytes) -> None:
    for limits in (DEFAULT, SMALL):
        expected = _facts(parse_message_reference(raw, NOW, limits))
        assert _facts(parse_message(raw, NOW, limits)) == expected
        typed = _parse_typed(raw, NOW, limits) if raw else None
        if typed is not None:  # the typed path accepts only what the reference accepts
            assert _facts(typed) == expected
            assert expected[1] == []


surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(st.one_of(st.characters(), surrogates), max_size=10)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.sampled_from(
        [
            0,
            -0.0,
            1e12,
            -1e12,
            1e12 + 1,
            1e6,
            1e6 + 0.5,
            1e308,
            2.2250738585072014e-308,
            2**63,
            2**64,
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
timestamps = _mostly(
    st.floats(min_value=NOW - 10 * 365 * 86400, max_value=NOW + 3000),
    st.one_of(
        st.floats(min_value=NOW - 10 * 365 * 86400, max_value=NOW + 7200),
        st.integers(min_value=940_000_000, max_value=1_800_000_000),
        st.sampled_from(
            [
                "2025-11-27T10:00:00+00:00",
                "2025-11-27T10:00:00",
                "2025-11-27 10:00:00.5+02:00",
                "yesterday",
                NOW + 3600,
                NOW + 3600.001,
                946_684_800,
                946_684_799.9,
            ]
        ),
        scalars,
    ),
)
device_ids = _mostly(
    st.sampled_from(["dev-1", "d", "abcdef", "ü" * 6, "😀" * 6]),
    st.one_of(st.sampled_from(["", "abcdefg", "😀" * 7]), texts),
)
metric_values = _mostly(
    st.one_of(
        st.floats(min_value=-2e6, max_value=2e6, allow_subnormal=False),
        st.integers(-(10**7), 10**7),
    ),
    st.one_of(numbers, scalars),
)
metric_maps = st.one_of(
    *[st.dictionaries(st.sampled_from(["t", "h", "p", "v", "x"]), metric_values, min_size=1)] * 4,
    st.dictionaries(
        st.sampled_from(["t", "h", "p", "v", "x"]), metric_values, min_size=0, max_size=5
    ),
    st.dictionaries(texts, metric_values, max_size=3),
    json_values,
)
seqs = _mostly(
    st.integers(min_value=0, max_value=1200),
    st.one_of(
        st.sampled_from([-1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, 1.0, True, "3"]),
        scalars,
    ),
)
optional_ids = st.one_of(st.none(), device_ids, scalars)


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "device_id": draw(device_ids),
        "ts": draw(timestamps),
        "seq": draw(seqs),
        "metrics": draw(metric_maps),
    }
    for name, values in (
        ("v", _mostly(st.just(1), st.sampled_from([2, 1.0, True, "1", None, 0]))),
        ("site", optional_ids),
        ("device_type", optional_ids),
        (
            "sent_at",
            st.one_of(
                st.none(), st.floats(min_value=-2e6, max_value=2e6, allow_subnormal=False), numbers
            ),
        ),
        ("readings", json_values),
        ("extra", json_values),
    ):
        if draw(st.integers(0, 5)) == 5:
            reading[name] = draw(values)
    for name in ("device_id", "ts", "seq", "metrics"):
        if draw(st.integers(0, 19)) == 19:
            del reading[name]
    return reading


messages = st.one_of(
    readings(),
    st.builds(lambda items: {"readings": items}, st.lists(readings(), max_size=6)),
    st.builds(
        lambda items, extra: {"readings": items, **extra},
        st.one_of(st.lists(readings(), max_size=3), json_values),
        st.dictionaries(texts, json_values, max_size=2),
    ),
    json_values,
)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    """JSON as a producer might write it: NaN/Infinity tokens and escapes included."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


@SETTINGS
@given(messages, st.booleans())
@example({"device_id": "dev-1", "ts": NOW - 1, "seq": 1, "metrics": {"t": math.nan}}, True)
@example({"device_id": "dev-1", "ts": NOW - 1, "seq": 1, "metrics": {"t": 1e400}}, True)
@example({"device_id": "dev-1", "ts": NOW - 1, "seq": 2**64, "metrics": {"t": 1}}, True)
@example({"readings": [{"device_id": "\ud800", "ts": NOW, "seq": 1, "metrics": {"t": 1}}]}, True)
@example({"readings": None, "device_id": "d", "ts": NOW, "seq": 1, "metrics": {"t": 1}}, True)
def test_typed_and_reference_decoding_agree_on_json(value: Any, ascii_only: bool) -> None:
    _assert_same(_dumps(value, ascii_only))


@SETTINGS
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xef\xbb\xbf{}")
@example(b"[" * 5000)
@example(b'{"device_id": "d", "metrics": ' + b"[" * 5000 + b"]" * 5000 + b"}")
def test_typed_and_reference_decoding_agree_on_arbitrary_bytes(raw: bytes) -> None:
    _assert_same(raw)


@SETTINGS
@given(messages, st.integers(min_value=0, max_value=400), st.binary(max_size=3))
def test_typed_and_reference_decoding_agree_on_damaged_json(
    value: Any, cut: int, junk: bytes
) -> None:
    raw = _dumps(value, True)
    cut = min(cut, len(raw))
    _assert_same(raw[:cut] + junk + raw[cut:])
    _assert_same(raw[:cut])


def test_escaped_and_duplicate_keys_decide_as_the_reference_does() -> None:
    good = b'"device_id": "d", "ts": 1764239000, "seq": 1, "metrics": {"t": 1}'
    for raw in (
        b"{" + good + b', "read\\u0069ngs": [1]}',  # an envelope, spelled with an escape
        b"{" + good + b', "seq": -1}',  # the last duplicate wins
        b'{"seq": -1, ' + good + b"}",
        b'{"metrics": {"t": "x"}, ' + good + b"}",
        b"{" + good + b', "metrics": {"t": 1, "h": 2, "t": 3}}',
    ):
        _assert_same(raw)


def test_well_formed_messages_take_the_typed_path() -> None:
    """The fast path is really used: a valid reading and envelope are accepted typed, with
    the reference's result (an oracle that only ever fell back would pass the rest)."""
    reading = {
        "device_id": "dev-ü",
        "ts": NOW - 5,
        "seq": 7,
        "v": 1,
        "metrics": {"t": 21.5, "h": 40, "big": 2**39 + 1},
        "site": "a",
        "sent_at": NOW - 4.5,
    }
    for raw in (orjson.dumps(reading), orjson.dumps({"readings": [reading, reading]})):
        typed = _parse_typed(raw, NOW, DEFAULT)
        assert typed is not None
        assert _facts(typed) == _facts(parse_message_reference(raw, NOW, DEFAULT))
        assert all(type(v) is float for r in typed.readings for v in r.metrics.values())


def test_invalid_utf8_in_a_skipped_key_is_invalid_json():
    """msgspec skips an unknown key without checking its UTF-8; orjson refuses the message
    (found by the damaged-JSON property above): both paths must dead-letter it."""
    raw = (
        b'{"device_id": "dev-1", "ts": 1448880000.0, "seq": 0, '
        b'"metrics": {"t": 0.0}, "\x80sent_at": null}'
    )
    assert _parse_typed(raw, NOW, DEFAULT) is None
    parsed = parse_message(raw, NOW, DEFAULT)
    assert parsed.readings == [] and [r.error_class for r in parsed.rejections] == ["InvalidJson"]
    _assert_same(raw)
