"""Turn raw message bytes into validated `SensorReading`s, or dead letters that say why.

Bad data is data: nothing here raises for a malformed record. `parse_message` returns the
readings that passed and one `Rejection` per reading (or whole message) that did not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from topics.records import SCHEMA_VERSION, MaintenanceEvent, SensorReading

__all__ = [
    "ParsedMessage",
    "Rejection",
    "ValidationLimits",
    "parse_maintenance",
    "parse_message",
    "parse_reading",
]

_EPOCH_2000 = 946_684_800.0


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """What a valid message looks like. Defaults accept years-old history, reject the absurd."""

    max_message_bytes: int = 256 * 1024
    max_readings_per_message: int = 10_000
    max_metrics: int = 256
    max_id_length: int = 128
    min_ts: float = _EPOCH_2000
    max_future_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one reading (or the whole message when `index` is None) is not valid."""

    error_class: str
    reason: str
    index: int | None = None
    original: bytes | None = None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A message's valid readings, its rejections, and whether it was a batch envelope."""

    readings: list[SensorReading]
    rejections: list[Rejection]
    batched: bool


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
        # orjson refuses NaN/Infinity tokens; re-parse only on this cold path to name them.
        try:
            json.loads(raw, parse_constant=_reject_constant)
        except _Invalid:
            raise
        except (ValueError, UnicodeDecodeError):
            pass
        raise _Invalid("InvalidJson", f"not valid JSON: {exc}") from None


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
        if not math.isfinite(number):
            raise _Invalid("NonFiniteValue", f"metric {name[:40]!r} is not finite")
        clean[name] = number
    sent_at = obj.get("sent_at")
    if sent_at is not None and (isinstance(sent_at, bool) or not isinstance(sent_at, int | float)):
        raise _Invalid("WrongType", "sent_at must be epoch seconds")
    return SensorReading(
        device_id=device_id,
        ts=_parse_ts(obj["ts"], now, limits),
        seq=seq,
        metrics=clean,
        site=_optional_str(obj, "site", limits),
        device_type=_optional_str(obj, "device_type", limits),
        schema_version=SCHEMA_VERSION,
        sent_at=float(sent_at) if sent_at is not None else None,
    )


def parse_message(raw: bytes | None, now: float, limits: ValidationLimits) -> ParsedMessage:
    """Validate one Kafka message value: a single reading or a `{"readings": [...]}` envelope."""
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
        for index, item in enumerate(items):
            try:
                readings.append(parse_reading(item, now, limits))
            except _Invalid as exc:
                rejections.append(Rejection(exc.error_class, exc.reason, index, orjson.dumps(item)))
        return ParsedMessage(readings, rejections, batched=True)
    try:
        return ParsedMessage([parse_reading(decoded, now, limits)], [], batched=False)
    except _Invalid as exc:
        return ParsedMessage([], [Rejection(exc.error_class, exc.reason)], batched=False)


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
