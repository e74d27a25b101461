"""Malformed messages: every kind present, evenly spread, and each one really invalid."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from edgeml.sim.malformed import (
    ERROR_CLASS,
    MALFORMED_KINDS,
    MALFORMED_SEQ_BASE,
    OVERSIZE_BYTES,
    malformed,
)

REQUIRED = {"device_id": str, "ts": (int, float, str), "seq": int, "metrics": dict}
MAX_TS = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def _reject_reason(value: bytes) -> str | None:
    """A strict reference validator, independent of the worker's: None = valid."""
    if len(value) > OVERSIZE_BYTES:
        return "oversize"
    try:
        data: Any = json.loads(value)
    except ValueError:
        return "bad_json"
    if not isinstance(data, dict):
        return "bad_json"
    for name, types in REQUIRED.items():
        if name not in data:
            return "missing_field"
        if isinstance(data[name], bool) or not isinstance(data[name], types):
            return "wrong_type"
    for metric in data["metrics"].values():
        if isinstance(metric, bool) or not isinstance(metric, int | float):
            return "wrong_type"
        if not math.isfinite(metric):
            return "non_finite"
    ts = data["ts"]
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts).timestamp()
        except ValueError:
            return "bad_timestamp"
    if not 0 <= ts < MAX_TS:
        return "bad_timestamp"
    return None


def test_kinds_spread_evenly_and_really_invalid() -> None:
    records = list(malformed(60, np.random.default_rng(0), device_ids=["dev-0001", "dev-0002"]))
    counts = Counter(r.kind for r in records)
    assert set(counts) == set(MALFORMED_KINDS)
    assert set(counts.values()) == {10}
    for record in records:
        assert _reject_reason(record.value) == record.kind, (record.kind, record.detail)
        assert record.key in (b"dev-0001", b"dev-0002")


def test_non_finite_uses_json_tokens() -> None:
    records = [r for r in malformed(30, np.random.default_rng(1)) if r.kind == "non_finite"]
    assert all(b"NaN" in r.value or b"Infinity" in r.value for r in records)
    for record in records:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(record.value)


def test_seqs_never_collide_with_valid_readings() -> None:
    for record in malformed(12, np.random.default_rng(2)):
        try:
            data = json.loads(record.value)
        except ValueError:
            continue
        seq = data.get("seq") if isinstance(data, dict) else None
        assert not isinstance(seq, int) or seq >= MALFORMED_SEQ_BASE


def test_deterministic() -> None:
    a = [r.value for r in malformed(12, np.random.default_rng(3))]
    b = [r.value for r in malformed(12, np.random.default_rng(3))]
    assert a == b


def test_negative_k() -> None:
    with pytest.raises(ValueError):
        list(malformed(-1, np.random.default_rng(0)))


def test_platform_validator_gives_the_expected_error_class() -> None:
    from edgeml.models.validation import ValidationLimits, parse_message

    now = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    for record in malformed(36, np.random.default_rng(4)):
        parsed = parse_message(record.value, now, ValidationLimits())
        assert parsed.readings == []
        assert [r.error_class for r in parsed.rejections] == [ERROR_CLASS[record.kind]], record
