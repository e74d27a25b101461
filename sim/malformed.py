"""Malformed raw messages of known kinds, for testing the dead-letter path.

`malformed(k, rng)` yields `k` single messages (never a batch envelope), spread evenly over
`MALFORMED_KINDS`; each carries its kind so tests can check the DLQ reason. Sub-variants are drawn
from `rng`. Malformed messages use real-looking device ids but seq numbers from
`MALFORMED_SEQ_BASE` up, so a parser that wrongly accepted one cannot collide with a valid reading.

Kinds:

- `bad_json`: not JSON at all (truncated object, trailing garbage, a bare word);
- `missing_field`: valid JSON without one required field (`device_id`, `ts`, `seq` or `metrics`);
- `non_finite`: a metric written as the JSON token `NaN`, `Infinity` or `-Infinity`
  (as Python's `json` writes them; strict parsers such as orjson already reject them);
- `wrong_type`: a field of the wrong type (seq as a non-numeric string, metrics as a list,
  device_id as a number, a metric value as a string, ts as a boolean);
- `bad_timestamp`: ts negative, in the year 3000, or an unparseable string;
- `oversize`: a syntactically valid reading larger than `OVERSIZE_BYTES` (256 KiB).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgeml.sim.generator import DEFAULT_START_TS

__all__ = [
    "ERROR_CLASS",
    "MALFORMED_KINDS",
    "MALFORMED_SEQ_BASE",
    "OVERSIZE_BYTES",
    "MalformedKind",
    "MalformedRecord",
    "malformed",
]

MalformedKind = Literal[
    "bad_json", "missing_field", "non_finite", "wrong_type", "bad_timestamp", "oversize"
]
MALFORMED_KINDS: tuple[MalformedKind, ...] = (
    "bad_json",
    "missing_field",
    "non_finite",
    "wrong_type",
    "bad_timestamp",
    "oversize",
)
# The dead-letter `edgeml.error.class` each kind should get from `models.validation`.
ERROR_CLASS: dict[MalformedKind, str] = {
    "bad_json": "InvalidJson",
    "missing_field": "MissingField",
    "non_finite": "NonFiniteValue",
    "wrong_type": "WrongType",
    "bad_timestamp": "BadTimestamp",
    "oversize": "Oversize",
}
MALFORMED_SEQ_BASE = 1_000_000_000
OVERSIZE_BYTES = 256 * 1024
YEAR_3000_TS = 32_503_680_000.0


@dataclass(frozen=True, slots=True)
class MalformedRecord:
    """One invalid message: its raw bytes, the key it is sent with, its kind, and a detail
    (e.g. which field is missing) for humans."""

    kind: MalformedKind
    detail: str
    key: bytes
    value: bytes


def malformed(
    k: int,
    rng: np.random.Generator,
    *,
    device_ids: Sequence[str] = ("dev-0001",),
    ts: float = DEFAULT_START_TS,
) -> Iterator[MalformedRecord]:
    """`k` malformed messages; message `i` has kind `MALFORMED_KINDS[i % 6]`."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not device_ids:
        raise ValueError("device_ids must not be empty")
    for i in range(k):
        kind = MALFORMED_KINDS[i % len(MALFORMED_KINDS)]
        device_id = device_ids[int(rng.integers(len(device_ids)))]
        base = _valid(device_id, ts, MALFORMED_SEQ_BASE + i)
        detail, value = _BUILDERS[kind](base, rng)
        yield MalformedRecord(kind=kind, detail=detail, key=device_id.encode(), value=value)


def _valid(device_id: str, ts: float, seq: int) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "ts": ts,
        "seq": seq,
        "v": 1,
        "metrics": {"temperature": 41.5, "humidity": 44.0, "pressure": 1012.3, "vibration": 2.4},
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _bad_json(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    text = _dumps(base)
    variant = int(rng.integers(3))
    if variant == 0:
        return "truncated", text[: len(text) // 2]
    if variant == 1:
        return "trailing garbage", text + b"}}garbage"
    return "bare word", b"reading:" + base["device_id"].encode()


def _missing_field(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    field = ("device_id", "ts", "seq", "metrics")[int(rng.integers(4))]
    del base[field]
    return f"no {field}", _dumps(base)


def _non_finite(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    token = (float("nan"), float("inf"), float("-inf"))[int(rng.integers(3))]
    metric = tuple(base["metrics"])[int(rng.integers(len(base["metrics"])))]
    base["metrics"][metric] = token
    return f"{metric}={token}", _dumps(base)  # json writes NaN / Infinity / -Infinity


def _wrong_type(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    variant = int(rng.integers(5))
    if variant == 0:
        base["seq"] = f"seq-{base['seq']}"
        detail = "seq is a string"
    elif variant == 1:
        base["metrics"] = list(base["metrics"].values())
        detail = "metrics is a list"
    elif variant == 2:
        base["device_id"] = 4711
        detail = "device_id is a number"
    elif variant == 3:
        base["metrics"]["temperature"] = "hot"
        detail = "metric is a string"
    else:
        base["ts"] = True
        detail = "ts is a boolean"
    return detail, _dumps(base)


def _bad_timestamp(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    variant = int(rng.integers(3))
    if variant == 0:
        base["ts"] = -float(rng.uniform(1.0, 1e9))
        detail = "negative"
    elif variant == 1:
        base["ts"] = YEAR_3000_TS + float(rng.uniform(0.0, 86_400.0))
        detail = "year 3000"
    else:
        base["ts"] = "yesterday at noon"
        detail = "unparseable string"
    return detail, _dumps(base)


def _oversize(base: dict[str, Any], rng: np.random.Generator) -> tuple[str, bytes]:
    count = OVERSIZE_BYTES // 12 + int(rng.integers(1, 4000))  # ~14 bytes per entry
    base["metrics"].update({f"m{j:06d}": 1.0 for j in range(count)})
    value = _dumps(base)
    assert len(value) > OVERSIZE_BYTES
    return f"{len(value)} bytes", value


_BUILDERS = {
    "bad_json": _bad_json,
    "missing_field": _missing_field,
    "non_finite": _non_finite,
    "wrong_type": _wrong_type,
    "bad_timestamp": _bad_timestamp,
    "oversize": _oversize,
}
