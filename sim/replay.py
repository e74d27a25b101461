"""Read recorded sensor data (CSV or JSON Lines) back as `SensorReading`s, for `edgeml replay`.

Pure and streaming: `read_rows(path)` yields one dict per row, `to_readings(rows, columns)` turns
rows into readings with a per-device `seq` counting from 0 in file order. Rows are expected in
event-time order (per device at least).

- Device: a fixed id (`device=`) or a column (`device_column=`, default `device_id` if present).
- Timestamp: a column (`timestamp_column=`, default the first of `ts`, `timestamp`, `time`,
  `datetime`, `date` present) holding ISO-8601 (no timezone = UTC) or epoch seconds; numbers
  above 1e11 are taken as epoch milliseconds.
- Metrics: `metric_columns=`, default every other column whose values are numbers. A JSONL row that
  has a `metrics` object (our own wire format) contributes those metrics. Empty, non-numeric or
  non-finite cells are left out of that reading; a row without a valid timestamp or without any
  metric is skipped and counted in `ReplayStats`.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from edgeml.topics.records import SensorReading

__all__ = [
    "TIMESTAMP_COLUMNS",
    "ReplayColumns",
    "ReplayError",
    "ReplayStats",
    "parse_timestamp",
    "read_rows",
    "to_readings",
]

TIMESTAMP_COLUMNS = ("ts", "timestamp", "time", "datetime", "date")
_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138


class ReplayError(ValueError):
    """The file or the column options cannot be replayed (one line, with the file's name and
    line number where there is one). `edgeml replay` reads the whole file once before it sends,
    so this is raised before anything is sent."""


@dataclass(frozen=True, slots=True)
class ReplayColumns:
    """How to read a file's rows. Leave fields None to auto-detect (see the module docstring)."""

    device: str | None = None
    device_column: str | None = None
    timestamp_column: str | None = None
    metric_columns: tuple[str, ...] | None = None
    site: str | None = None
    device_type: str | None = None


@dataclass(slots=True)
class ReplayStats:
    """Rows read, readings made, and rows skipped by reason (with the first few line numbers)."""

    rows: int = 0
    readings: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(f"row {line}: {reason}")


def read_rows(path: Path, fmt: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (header line first) or JSON Lines file; `fmt` is `csv` or `jsonl`, by
    default taken from the suffix (.csv, .jsonl, .ndjson, .json). Content that is not text,
    CSV or JSON raises `ReplayError`; `OSError` from reading the file passes through."""
    kind = fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(
        path.suffix.lower()
    )
    if kind not in ("csv", "jsonl"):
        raise ReplayError(f"{path.name}: unknown format; use .csv or .jsonl (or --format)")
    if kind == "csv":
        with path.open("rb") as handle:
            reader = csv.DictReader(_text_lines(handle, path.name))
            try:
                if not reader.fieldnames:
                    raise ReplayError(f"{path.name}: no CSV header line")
                yield from reader
            except csv.Error as exc:  # e.g. a field over csv's size limit
                raise ReplayError(f"{path.name}:{reader.line_num}: not CSV: {exc}") from None
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{path.name}:{number}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise ReplayError(f"{path.name}:{number}: expected a JSON object per line")
            yield row


def _text_lines(handle: BinaryIO, name: str) -> Iterator[str]:
    """The file's lines decoded one by one (line endings kept, as csv wants with newline=""),
    so a byte that is not UTF-8 is reported at its own line: a text-mode file decodes 8 KiB
    blocks ahead of the csv reader, and its line count points elsewhere."""
    for number, raw in enumerate(handle, 1):
        try:
            yield (raw.removeprefix(codecs.BOM_UTF8) if number == 1 else raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReplayError(
                f"{name}:{number}: not UTF-8 text ({exc.reason} at column {exc.start + 1}); "
                "is it a CSV file?"
            ) from None


def parse_timestamp(value: Any) -> float | None:
    """ISO-8601 (naive = UTC) or epoch seconds (or milliseconds above 1e11) -> epoch seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    if not math.isfinite(number):
        return None
    return number / 1000.0 if abs(number) > _MS_THRESHOLD else number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics")
    if isinstance(metrics, dict):
        flat = {k: v for k, v in row.items() if k != "metrics"}
        flat.update(metrics)
        return flat
    return row


def to_readings(
    rows: Iterable[dict[str, Any]],
    columns: ReplayColumns = ReplayColumns(),
    stats: ReplayStats | None = None,
) -> Iterator[SensorReading]:
    """Readings from rows; column choices are resolved on the first row and then fixed."""
    stats = stats if stats is not None else ReplayStats()
    seqs: dict[str, int] = {}
    resolved: tuple[str | None, str, tuple[str, ...]] | None = None
    for line, raw in enumerate(rows, 1):
        row = _flatten(raw)
        stats.rows += 1
        if resolved is None:
            resolved = _resolve(row, columns)
        device_column, ts_column, metric_columns = resolved
        if device_column is None:
            device_id = columns.device or ""
        else:
            value = row.get(device_column)
            device_id = "" if value is None else str(value).strip()
        if not device_id:
            stats.skip(line, "no device id")
            continue
        ts = parse_timestamp(row.get(ts_column))
        if ts is None:
            stats.skip(line, "bad timestamp")
            continue
        metrics = {
            name: number
            for name in metric_columns
            if (number := _number(row.get(name))) is not None
        }
        if not metrics:
            stats.skip(line, "no numeric metric")
            continue
        seq = seqs.get(device_id, 0)
        seqs[device_id] = seq + 1
        stats.readings += 1
        site = columns.site if columns.site is not None else _text(row.get("site"))
        device_type = (
            columns.device_type
            if columns.device_type is not None
            else _text(row.get("device_type"))
        )
        yield SensorReading(
            device_id=device_id,
            ts=ts,
            seq=seq,
            metrics=metrics,
            site=site,
            device_type=device_type,
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_NOT_METRICS = {"seq", "v", "site", "device_type", "sent_at", "scored_at"}


def _resolve(
    row: dict[str, Any], columns: ReplayColumns
) -> tuple[str | None, str, tuple[str, ...]]:
    names = list(row)
    if columns.device is not None and columns.device_column is not None:
        raise ReplayError("give either --device or --device-column, not both")
    device_column = columns.device_column
    if columns.device is None and device_column is None:
        if "device_id" not in row:
            raise ReplayError(
                f"no device_id column; give --device ID or --device-column (columns: "
                f"{', '.join(names)})"
            )
        device_column = "device_id"
    if device_column is not None and device_column not in row:
        raise ReplayError(f"no column {device_column!r}; columns: {', '.join(names)}")
    ts_column = columns.timestamp_column or next((c for c in TIMESTAMP_COLUMNS if c in row), None)
    if ts_column is None or ts_column not in row:
        wanted = columns.timestamp_column or " / ".join(TIMESTAMP_COLUMNS)
        raise ReplayError(
            f"no timestamp column {wanted}; give --timestamp-column (columns: {', '.join(names)})"
        )
    if columns.metric_columns is not None:
        missing = [c for c in columns.metric_columns if c not in row]
        if missing:
            raise ReplayError(f"no column(s) {', '.join(missing)}; columns: {', '.join(names)}")
        metrics = tuple(columns.metric_columns)
    else:
        taken = {device_column, ts_column} | _NOT_METRICS
        metrics = tuple(c for c in names if c not in taken and _number(row[c]) is not None)
        if not metrics:
            raise ReplayError(
                f"no numeric columns in the first row; give --metric-columns (columns: "
                f"{', '.join(names)})"
            )
    return device_column, ts_column, metrics
