"""Validation: every malformation becomes a named rejection; good readings pass untouched."""

from __future__ import annotations

import orjson
import pytest

from edgeml.models.validation import ValidationLimits, parse_message

NOW = 1_764_240_000.0
LIMITS = ValidationLimits()
GOOD = {"device_id": "dev-1", "ts": NOW - 10, "seq": 3, "metrics": {"temperature": 21.5}}


def _with(**changes: object) -> bytes:
    reading = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in reading.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("raw", "error_class", "reason_part"),
    [
        (b"", "EmptyMessage", "empty"),
        (b"{not json", "InvalidJson", "not valid JSON"),
        (
            b'{"device_id": "d", "ts": 1.0, "seq": 1, "metrics": {"t": NaN}}',
            "NonFiniteValue",
            "NaN",
        ),
        (
            b'{"device_id": "d", "ts": 1.0, "seq": 1, "metrics": {"t": Infinity}}',
            "NonFiniteValue",
            "Infinity",
        ),
        (_with(device_id=_DROP), "MissingField", "device_id"),
        (_with(metrics=_DROP), "MissingField", "metrics"),
        (_with(seq="3"), "WrongType", "seq"),
        (_with(seq=True), "WrongType", "seq"),
        (_with(seq=-1), "WrongType", "seq"),
        (_with(metrics=[1, 2]), "WrongType", "metrics"),
        (_with(metrics={}), "WrongType", "metrics"),
        (_with(metrics={"t": "hot"}), "WrongType", "'t'"),
        (_with(metrics={"t": True}), "WrongType", "'t'"),
        (_with(device_id=""), "WrongType", "device_id"),
        (_with(ts=-5), "BadTimestamp", "before"),
        (_with(ts=32_503_680_000), "BadTimestamp", "future"),
        (_with(ts="yesterday"), "BadTimestamp", "ISO-8601"),
        (_with(ts="2025-01-01T00:00:00"), "BadTimestamp", "timezone"),
        (_with(ts=None), "WrongType", "ts"),
        (_with(v=2), "UnsupportedSchema", "version"),
        (b'["a", "list"]', "WrongType", "JSON object"),
        (_with(metrics={f"m{i}": 1.0 for i in range(300)}), "Oversize", "metrics"),
        (b'{"pad": "' + b"x" * (300 * 1024) + b'"}', "Oversize", "bytes"),
        (b'{"readings": []}', "WrongType", "non-empty list"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(
    raw: bytes, error_class: str, reason_part: str
) -> None:
    parsed = parse_message(raw, NOW, LIMITS)
    assert parsed.readings == []
    assert [r.error_class for r in parsed.rejections] == [error_class]
    assert reason_part in parsed.rejections[0].reason


def test_a_good_reading_keeps_every_field_and_unknown_metric_names() -> None:
    raw = orjson.dumps(
        {
            **GOOD,
            "metrics": {"flux_capacitance": 1.21, "rpm": 3000},
            "site": "plant-a",
            "device_type": "pump",
            "v": 1,
            "sent_at": NOW - 9.5,
        }
    )
    (reading,) = parse_message(raw, NOW, LIMITS).readings
    assert reading.metrics == {"flux_capacitance": 1.21, "rpm": 3000.0}
    assert (reading.device_id, reading.seq, reading.site, reading.device_type) == (
        "dev-1",
        3,
        "plant-a",
        "pump",
    )
    assert reading.ts == NOW - 10 and reading.sent_at == NOW - 9.5


def test_history_years_old_is_valid_and_iso_timestamps_parse() -> None:
    old = parse_message(_with(ts="2019-03-01T12:00:00+00:00"), NOW, LIMITS)
    assert old.readings[0].ts == 1_551_441_600.0


def test_a_batch_keeps_good_readings_and_rejects_each_bad_one_by_index() -> None:
    bad = {**GOOD, "seq": "x"}
    raw = orjson.dumps({"readings": [GOOD, bad, {**GOOD, "seq": 4}]})
    parsed = parse_message(raw, NOW, LIMITS)
    assert parsed.batched
    assert [r.seq for r in parsed.readings] == [3, 4]
    (rejection,) = parsed.rejections
    assert rejection.index == 1 and rejection.error_class == "WrongType"
    assert orjson.loads(rejection.original or b"") == bad
