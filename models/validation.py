"""Turn raw message bytes into validated `SensorReading`s, or dead letters that say why.

Bad data is data: nothing here raises for a malformed record. `parse_message` returns the
readings that passed and one `Rejection` per reading (or whole message) that did not.

Every number that reaches the models is bounded here: metric values by
`ValidationLimits.max_abs_value` (default 1e12, far above any sensor and far below where
squares and sums of squares in the detectors lose meaning), `seq` by `max_seq` (a signed
64-bit counter), `sent_at` finite; anything else is `OutOfRange`. Decoding cannot raise:
orjson's depth limit (1,024) answers deep nesting without recursion, and the stdlib
re-parse that names NaN/Infinity tokens runs only when such a token is in the bytes (a
5,000-deep array made it raise `RecursionError`). A last-resort catch turns any other
exception into an `InvalidMessage` rejection carrying the exception text.

Decoded once, typed. `parse_message` first decodes the bytes straight into msgspec structs
whose field types and `Meta` bounds are these limits (non-empty device id of at most
`max_id_length`, `seq` in [0, `max_seq`], 1..`max_metrics` finite metrics within
`max_abs_value`, ...), so a valid message becomes `SensorReading`s with no intermediate dict
per reading and no Python-level type checks (only `ts` against `now` is checked here). Any
message that path does not accept whole, for whatever reason, is parsed again by
`parse_message_reference` (the orjson + per-field path above), which alone decides the
rejections and their reasons: the typed path can only accept, never reject, so every DLQ reason
stays what it was, and tests compare the two on arbitrary bytes. Measured with
`python -m bench.decode` (docs/benchmarks.md): per reading, the reference path costs
about 5 µs single / 3.5 µs batched, the typed path about 1.4 / 0.9.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

import msgspec
import orjson

from edgeml.topics.records import SCHEMA_VERSION, MaintenanceEvent, SensorReading

__all__ = [
    "ParsedMessage",
    "Rejection",
    "ValidationLimits",
    "parse_maintenance",
    "parse_message",
    "parse_message_reference",
    "parse_reading",
]

_EPOCH_2000 = 946_684_800.0
_NON_FINITE_TOKENS = (b"NaN", b"Infinity")


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """What a valid message looks like. Defaults accept years-old history, reject the absurd."""

    max_message_bytes: int = 256 * 1024
    max_readings_per_message: int = 10_000
    max_metrics: int = 256
    max_id_length: int = 128
    min_ts: float = _EPOCH_2000
    max_future_s: float = 3600.0
    max_abs_value: float = 1e12  # metric values and sent_at: |x| above this is OutOfRange
    max_seq: int = 2**63 - 1  # seq above this is OutOfRange (a signed 64-bit counter)

    def __post_init__(self) -> None:
        if not 0.0 < self.max_abs_value <= 1e100:
            # the models clamp at 1e100 (models.features.VALUE_LIMIT): a larger bound would
            # let values through that the detectors then see changed
            raise ValueError(f"max_abs_value must be in (0, 1e100], got {self.max_abs_value!r}")
        if self.max_seq < 0:
            raise ValueError(f"max_seq must be >= 0, got {self.max_seq!r}")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one reading (or the whole message when `index` is None) is not valid."""

    error_class: str
    reason: str
    index: int | None = None
    original: bytes | None = None


@dataclass(slots=True)
class ParsedMessage:
    """A message's valid readings, its rejections, and whether it was a batch envelope.

    `indices` gives each reading's position in the envelope (empty for a single reading).
    Not frozen: one is made per input message, and a frozen dataclass's `__init__` (one
    `object.__setattr__` per field) cost as much as decoding a single reading."""

    readings: list[SensorReading]
    rejections: list[Rejection]
    batched: bool
    indices: list[int] = field(default_factory=list)


class _Invalid(Exception):
    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def _reject_constant(token: str) -> float:
    raise _Invalid("NonFiniteValue", f"non-finite number {token} in JSON")


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity tokens; re-parse only on this cold path, and only when
        # such a token is in the bytes, to name them. The stdlib parser recurses per nesting
        # level: deep input raises RecursionError, which is just more invalid JSON.
        if any(token in raw for token in _NON_FINITE_TOKENS):
            try:
                json.loads(raw, parse_constant=_reject_constant)
            except _Invalid:
                raise
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
        raise _Invalid("InvalidJson", f"not valid JSON: {exc}") from None


def _number(value: float, name: str, limits: ValidationLimits) -> float:
    if not math.isfinite(value):
        raise _Invalid("NonFiniteValue", f"{name} is not finite")
    if not -limits.max_abs_value <= value <= limits.max_abs_value:
        raise _Invalid("OutOfRange", f"{name} is {value:.3g} (max |x| {limits.max_abs_value:g})")
    return value


def _original(item: Any) -> bytes | None:
    """An envelope item's JSON for its dead letter; None (the whole message is sent) when
    orjson cannot write it back (more than 254 levels deep)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return None


def _unexpected(exc: Exception) -> _Invalid:
    return _Invalid("InvalidMessage", f"unexpected {type(exc).__name__}: {exc}"[:500])


def _parse_ts(value: Any, now: float, limits: ValidationLimits) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(
            "WrongType", f"ts must be epoch seconds or ISO-8601, got {type(value).__name__}"
        )
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid("BadTimestamp", f"ts {value[:40]!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise _Invalid("BadTimestamp", f"ts {value[:40]!r} has no timezone")
        ts = parsed.timestamp()
    else:
        ts = float(value)
    if not math.isfinite(ts):
        raise _Invalid("NonFiniteValue", "ts is not finite")
    if ts < limits.min_ts:
        raise _Invalid("BadTimestamp", f"ts {ts:.3f} is before {limits.min_ts:.0f} (2000-01-01)")
    if ts > now + limits.max_future_s:
        raise _Invalid(
            "BadTimestamp",
            f"ts {ts:.3f} is {ts - now:.0f} s in the future (max {limits.max_future_s:.0f})",
        )
    return ts


def _optional_str(obj: dict[str, Any], name: str, limits: ValidationLimits) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limits.max_id_length:
        raise _Invalid("WrongType", f"{name} must be a string of at most {limits.max_id_length}")
    return value


def parse_reading(obj: Any, now: float, limits: ValidationLimits) -> SensorReading:
    """Validate one decoded reading object. Raises `_Invalid` (caught by `parse_message`)."""
    if not isinstance(obj, dict):
        raise _Invalid("WrongType", f"a reading must be a JSON object, got {type(obj).__name__}")
    for name in ("device_id", "ts", "seq", "metrics"):
        if name not in obj:
            raise _Invalid("MissingField", f"required field {name!r} is missing")
    device_id = obj["device_id"]
    if not isinstance(device_id, str) or not device_id or len(device_id) > limits.max_id_length:
        raise _Invalid(
            "WrongType", f"device_id must be a non-empty string of at most {limits.max_id_length}"
        )
    seq = obj["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise _Invalid("WrongType", f"seq must be a non-negative integer, got {seq!r:.40}")
    if seq > limits.max_seq:
        raise _Invalid("OutOfRange", f"seq {seq} is over {limits.max_seq}")
    version = obj.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _Invalid(
            "UnsupportedSchema", f"schema version {version!r:.20} (supported: {SCHEMA_VERSION})"
        )
    metrics = obj["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise _Invalid("WrongType", "metrics must be a non-empty object of name -> number")
    if len(metrics) > limits.max_metrics:
        raise _Invalid("Oversize", f"{len(metrics)} metrics (max {limits.max_metrics})")
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(
                "WrongType", f"metric {name[:40]!r} must be a number, got {type(value).__name__}"
            )
        number = float(value)
        if not -limits.max_abs_value <= number <= limits.max_abs_value:  # NaN fails too
            _number(number, f"metric {name[:40]!r}", limits)
        clean[name] = number
    sent_at = obj.get("sent_at")
    if sent_at is not None:
        if isinstance(sent_at, bool) or not isinstance(sent_at, int | float):
            raise _Invalid("WrongType", "sent_at must be epoch seconds")
        sent_at = _number(float(sent_at), "sent_at", limits)
    return SensorReading(
        device_id=device_id,
        ts=_parse_ts(obj["ts"], now, limits),
        seq=seq,
        metrics=clean,
        site=_optional_str(obj, "site", limits),
        device_type=_optional_str(obj, "device_type", limits),
        schema_version=SCHEMA_VERSION,
        sent_at=sent_at,
    )


def parse_message(raw: bytes | None, now: float, limits: ValidationLimits) -> ParsedMessage:
    """Validate one Kafka message value: a single reading or a `{"readings": [...]}` envelope.

    Never raises: what no check names (a bug, an input nobody thought of) is rejected as
    `InvalidMessage` with the exception's text, so one message cannot stop the worker."""
    if raw and len(raw) <= limits.max_message_bytes:
        accepted = _parse_typed(raw, now, limits)
        if accepted is not None:
            return accepted
    return parse_message_reference(raw, now, limits)


def parse_message_reference(
    raw: bytes | None, now: float, limits: ValidationLimits
) -> ParsedMessage:
    """`parse_message` by the reference path alone: orjson to Python objects, then each field
    checked in Python. The typed path's oracle, and what names every rejection."""
    try:
        return _parse_message(raw, now, limits)
    except Exception as exc:  # last resort: see the docstring
        invalid = _unexpected(exc)
        return ParsedMessage([], [Rejection(invalid.error_class, invalid.reason)], batched=False)


def _parse_message(raw: bytes | None, now: float, limits: ValidationLimits) -> ParsedMessage:
    try:
        if not raw:
            raise _Invalid("EmptyMessage", "message value is empty")
        if len(raw) > limits.max_message_bytes:
            raise _Invalid(
                "Oversize", f"message is {len(raw)} bytes (max {limits.max_message_bytes})"
            )
        decoded = _decode(raw)
    except _Invalid as exc:
        return ParsedMessage([], [Rejection(exc.error_class, exc.reason)], batched=False)
    if isinstance(decoded, dict) and "readings" in decoded:
        items = decoded["readings"]
        if not isinstance(items, list) or not items:
            reason = "readings must be a non-empty list"
            return ParsedMessage([], [Rejection("WrongType", reason)], batched=True)
        if len(items) > limits.max_readings_per_message:
            reason = f"{len(items)} readings in one message (max {limits.max_readings_per_message})"
            return ParsedMessage([], [Rejection("Oversize", reason)], batched=True)
        readings: list[SensorReading] = []
        rejections: list[Rejection] = []
        indices: list[int] = []
        for index, item in enumerate(items):
            try:
                readings.append(parse_reading(item, now, limits))
                indices.append(index)
            except Exception as exc:  # _Invalid, or the last resort for this item alone
                invalid = exc if isinstance(exc, _Invalid) else _unexpected(exc)
                rejections.append(
                    Rejection(invalid.error_class, invalid.reason, index, _original(item))
                )
        return ParsedMessage(readings, rejections, batched=True, indices=indices)
    try:
        return ParsedMessage([parse_reading(decoded, now, limits)], [], batched=False)
    except _Invalid as exc:
        return ParsedMessage([], [Rejection(exc.error_class, exc.reason)], batched=False)


class _TypedDecoders:
    """msgspec decoders for one `ValidationLimits`: a single reading and a batch envelope."""

    __slots__ = ("envelope", "single")

    def __init__(self, limits: ValidationLimits) -> None:
        # Struct types made at run time from the limits: mypy sees them as Any.
        bound = limits.max_abs_value
        ident: Any = Annotated[str, msgspec.Meta(max_length=limits.max_id_length)]
        number: Any = Annotated[float, msgspec.Meta(ge=-bound, le=bound)]
        metrics: Any = Annotated[
            dict[str, number], msgspec.Meta(min_length=1, max_length=limits.max_metrics)
        ]
        fields: list[Any] = [
            ("device_id", Annotated[ident, msgspec.Meta(min_length=1)]),
            ("ts", float | str),  # a JSON integer decodes to float, as float(value) did
            ("seq", Annotated[int, msgspec.Meta(ge=0, le=limits.max_seq)]),
            ("metrics", metrics),
            ("v", int, SCHEMA_VERSION),
            ("site", ident | None, None),
            ("device_type", ident | None, None),
            ("sent_at", number | None, None),
        ]
        reading: Any = msgspec.defstruct("TypedReading", fields, gc=False)
        # `readings` present (any value): the message is an envelope, not a single reading
        unset: Any = msgspec.Raw | msgspec.UnsetType
        single = msgspec.defstruct(
            "TypedSingle", [("readings", unset, msgspec.UNSET)], bases=(reading,), gc=False
        )
        items: Any = Annotated[
            list[reading], msgspec.Meta(min_length=1, max_length=limits.max_readings_per_message)
        ]
        envelope = msgspec.defstruct("TypedEnvelope", [("readings", items)], gc=False)
        self.single: msgspec.json.Decoder[Any] = msgspec.json.Decoder(single)
        self.envelope: msgspec.json.Decoder[Any] = msgspec.json.Decoder(envelope)


@lru_cache(maxsize=8)
def _typed_decoders(limits: ValidationLimits) -> _TypedDecoders:
    return _TypedDecoders(limits)


def _parse_typed(raw: bytes, now: float, limits: ValidationLimits) -> ParsedMessage | None:
    """The message as `parse_message_reference` would accept it, or None: not accepted whole
    here (anything invalid, or a form the structs do not take), for the reference to decide."""
    if not raw.isascii():
        # msgspec skips an unknown key without checking its UTF-8 (b'{"\\x80x": 1}' decodes),
        # orjson refuses the whole message: the reference decides anything not valid UTF-8
        try:
            raw.decode()
        except UnicodeDecodeError:
            return None
    decoders = _typed_decoders(limits)
    batched = b'"readings"' in raw  # a guess which decoder to try first; each checks itself
    try:
        if batched:
            items = decoders.envelope.decode(raw).readings
        else:
            single = decoders.single.decode(raw)
            if single.readings is not msgspec.UNSET:
                return None
            items = [single]
    except Exception:  # invalid, or RecursionError on deep nesting: the reference decides
        return None
    readings: list[SensorReading] = []
    earliest, latest = limits.min_ts, now + limits.max_future_s
    for item in items:
        ts = item.ts
        if ts.__class__ is not float or not earliest <= ts <= latest or item.v != SCHEMA_VERSION:
            return None  # an ISO-8601 ts, a bad ts or schema version: the reference decides
        readings.append(
            SensorReading(
                item.device_id,
                ts,
                item.seq,
                item.metrics,
                item.site,
                item.device_type,
                SCHEMA_VERSION,
                item.sent_at,
            )
        )
    if batched:
        return ParsedMessage(readings, [], batched=True, indices=list(range(len(readings))))
    return ParsedMessage(readings, [], batched=False)


def parse_maintenance(
    raw: bytes | None, now: float, limits: ValidationLimits
) -> MaintenanceEvent | Rejection:
    """Validate one `maintenance-events` message: `{"device_id", "ts", "kind"}`."""
    try:
        if not raw:
            raise _Invalid("EmptyMessage", "message value is empty")
        obj = _decode(raw)
        if not isinstance(obj, dict):
            raise _Invalid("WrongType", "a maintenance event must be a JSON object")
        for name in ("device_id", "ts", "kind"):
            if name not in obj:
                raise _Invalid("MissingField", f"required field {name!r} is missing")
        device_id, kind = obj["device_id"], obj["kind"]
        if not isinstance(device_id, str) or not device_id:
            raise _Invalid("WrongType", "device_id must be a non-empty string")
        if kind not in ("failure", "repair"):
            raise _Invalid("WrongType", f"kind must be 'failure' or 'repair', got {kind!r:.40}")
        return MaintenanceEvent(device_id, _parse_ts(obj["ts"], now, limits), kind)
    except _Invalid as exc:
        return Rejection(exc.error_class, exc.reason)
    except Exception as exc:  # last resort, as in parse_message
        invalid = _unexpected(exc)
        return Rejection(invalid.error_class, invalid.reason)
