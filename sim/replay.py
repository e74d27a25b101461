"""Read recorded sensor data (CSV or JSON Lines) back as `SensorReading`s, for `edgeml replay`.

Pure and streaming: `read_rows(path)` yields one dict per row, `to_readings(rows, columns)` turns
rows into readings with a per-device `seq` counting from 0 in row order. `file_readings(path)`
does both for one file and names the file and line in its messages; `merged_readings(paths)`
merges several files in event-time order (a device's `seq` counts over all of them). Rows are
expected in event-time order (per device at least).

- Device: a fixed id (`device=`), the file name without its suffix (`device_from="filename"`),
  or a column (`device_column=`, default `device_id` if present).
- Timestamp: a column (`timestamp_column=`, default the first of `ts`, `timestamp`, `time`,
  `datetime`, `date` present) holding ISO-8601 with a time zone (`Z`, `+01:00`) or epoch
  seconds; numbers above 1e11 are taken as epoch milliseconds. One rule for CSV and JSON (the
  same `parse_timestamp`, and the rule the wire format's validation applies): an ISO-8601 time
  without a zone is an error naming the file and line, since guessing its zone shifts every
  reading by hours, unless `assume_utc=True` (`--assume-utc`).
- Metrics: `metric_columns=`, default every other column whose values are numbers. A JSONL row that
  has a `metrics` object (our own wire format) contributes those metrics. Empty, non-numeric or
  non-finite cells are left out of that reading; a row without a valid timestamp or without any
  metric is skipped and counted in `ReplayStats`.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import orjson

from edgeml.topics.records import SensorReading

__all__ = [
    "DEVICE_FROM",
    "TIMESTAMP_COLUMNS",
    "NaiveTimestamp",
    "ReplayColumns",
    "ReplayError",
    "ReplayStats",
    "file_readings",
    "merged_readings",
    "numbered_rows",
    "parse_timestamp",
    "read_rows",
    "to_readings",
]

TIMESTAMP_COLUMNS = ("ts", "timestamp", "time", "datetime", "date")
DEVICE_FROM = ("column", "filename")
_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class ReplayError(ValueError):
    """The file or the column options cannot be replayed (one line, with the file's name and
    line number where there is one). `edgeml replay` reads every file once before it sends,
    so this is raised before anything is sent."""


class NaiveTimestamp(ReplayError):
    """An ISO-8601 time without a time zone, where none may be assumed."""


@dataclass(frozen=True, slots=True)
class ReplayColumns:
    """How to read a file's rows. Leave fields None to auto-detect (see the module docstring).
    `device_from="filename"` takes each file's stem as its device id (`file_readings`)."""

    device: str | None = None
    device_column: str | None = None
    timestamp_column: str | None = None
    metric_columns: tuple[str, ...] | None = None
    site: str | None = None
    device_type: str | None = None
    device_from: Literal["column", "filename"] = "column"

    def __post_init__(self) -> None:
        if self.device_from not in DEVICE_FROM:
            raise ValueError(
                f"device_from must be one of {', '.join(DEVICE_FROM)}, got {self.device_from!r}"
            )


@dataclass(slots=True)
class ReplayStats:
    """Rows read, readings made, devices seen, and rows skipped by reason (with the first few
    places: `file:line` for files, `row N` for plain rows)."""

    rows: int = 0
    readings: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {reason}")


def _format(path: Path, fmt: str | None) -> str:
    kind = fmt or _SUFFIX_FORMATS.get(path.suffix.lower())
    if kind not in ("csv", "jsonl"):
        raise ReplayError(f"{path.name}: unknown format; use .csv or .jsonl (or --format)")
    return kind


def read_rows(path: Path, fmt: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a CSV (header line first) or JSON Lines file; `fmt` is `csv` or `jsonl`, by
    default taken from the suffix (.csv, .jsonl, .ndjson, .json). Content that is not text,
    CSV or JSON raises `ReplayError`; `OSError` from reading the file passes through."""
    for _, row in numbered_rows(path, fmt):
        yield row


def numbered_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """`read_rows` with each row's line number in the file (a CSV row's last line)."""
    kind = _format(path, fmt)
    if kind == "csv":
        with path.open("rb") as handle:
            reader = csv.DictReader(_text_lines(handle, path.name))
            try:
                if not reader.fieldnames:
                    raise ReplayError(f"{path.name}: no CSV header line")
                for row in reader:
                    yield reader.line_num, row
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
            yield number, row


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


def parse_timestamp(value: Any, *, assume_utc: bool = False) -> float | None:
    """ISO-8601 with a time zone, or epoch seconds (milliseconds above 1e11) -> epoch seconds;
    None when `value` is no time at all. An ISO-8601 time without a zone raises
    `NaiveTimestamp` unless `assume_utc`. Numbers and numeric strings read the same, so a CSV
    cell and a JSON number give one instant."""
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
                if not assume_utc:
                    raise NaiveTimestamp(f"timestamp {text[:40]!r} has no time zone") from None
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


class _Parsed(NamedTuple):
    """A row that makes a reading, before its device's `seq` is known (files are merged first)."""

    ts: float
    device_id: str
    metrics: dict[str, float]
    site: str | None
    device_type: str | None


def to_readings(
    rows: Iterable[dict[str, Any]],
    columns: ReplayColumns = ReplayColumns(),
    stats: ReplayStats | None = None,
    *,
    assume_utc: bool = False,
) -> Iterator[SensorReading]:
    """Readings from rows; column choices are resolved on the first row and then fixed.
    Messages name rows by their position (`row 3`)."""
    stats = stats if stats is not None else ReplayStats()
    numbered = ((f"row {n}", row) for n, row in enumerate(rows, 1))
    return _with_seq(_parse(numbered, columns, stats, assume_utc, ""), stats)


def file_readings(
    path: Path,
    fmt: str | None = None,
    columns: ReplayColumns = ReplayColumns(),
    stats: ReplayStats | None = None,
    *,
    assume_utc: bool = False,
) -> Iterator[SensorReading]:
    """One file's readings (`seq` per device from 0); messages say `file:line`."""
    stats = stats if stats is not None else ReplayStats()
    return _with_seq(_parse_file(path, fmt, columns, stats, assume_utc), stats)


def merged_readings(
    paths: Sequence[Path],
    fmt: str | None = None,
    columns: ReplayColumns = ReplayColumns(),
    stats: ReplayStats | None = None,
    *,
    assume_utc: bool = False,
) -> Iterator[SensorReading]:
    """The readings of all `paths` in event-time order, streamed: one open file per path, the
    next reading always the earliest head (ties keep the order of `paths`; a file's own rows
    keep their order). A device's `seq` counts its readings over all files from 0, so files
    that split one device's history (by month, say) replay as one history."""
    stats = stats if stats is not None else ReplayStats()
    streams = [_parse_file(path, fmt, columns, stats, assume_utc) for path in paths]
    return _with_seq(heapq.merge(*streams, key=lambda parsed: parsed.ts), stats)


def _parse_file(
    path: Path, fmt: str | None, columns: ReplayColumns, stats: ReplayStats, assume_utc: bool
) -> Iterator[_Parsed]:
    if columns.device_from == "filename":
        if columns.device is not None or columns.device_column is not None:
            raise ReplayError("give either --device-from filename or --device/--device-column")
        columns = replace(columns, device=path.stem)
    numbered = ((f"{path.name}:{n}", row) for n, row in numbered_rows(path, fmt))
    return _parse(numbered, columns, stats, assume_utc, path.name)


def _with_seq(parsed: Iterable[_Parsed], stats: ReplayStats) -> Iterator[SensorReading]:
    seqs: dict[str, int] = {}
    for p in parsed:
        seq = seqs.get(p.device_id, 0)
        seqs[p.device_id] = seq + 1
        yield SensorReading(
            device_id=p.device_id,
            ts=p.ts,
            seq=seq,
            metrics=p.metrics,
            site=p.site,
            device_type=p.device_type,
        )


def _parse(
    rows: Iterable[tuple[str, dict[str, Any]]],
    columns: ReplayColumns,
    stats: ReplayStats,
    assume_utc: bool,
    source: str,
) -> Iterator[_Parsed]:
    resolved: tuple[str | None, str, tuple[str, ...]] | None = None
    for where, raw in rows:
        row = _flatten(raw)
        stats.rows += 1
        if resolved is None:
            try:
                resolved = _resolve(row, columns)
            except ReplayError as exc:
                raise ReplayError(f"{source}: {exc}" if source else str(exc)) from None
        device_column, ts_column, metric_columns = resolved
        if device_column is None:
            device_id = columns.device or ""
        else:
            value = row.get(device_column)
            device_id = "" if value is None else str(value).strip()
        if not device_id:
            stats.skip(where, "no device id")
            continue
        try:
            ts = parse_timestamp(row.get(ts_column), assume_utc=assume_utc)
        except NaiveTimestamp as exc:
            raise NaiveTimestamp(
                f"{where}: {exc}; add one (Z, +01:00) or pass --assume-utc to read it as UTC"
            ) from None
        if ts is None:
            stats.skip(where, "bad timestamp")
            continue
        metrics = {
            name: number
            for name in metric_columns
            if (number := _number(row.get(name))) is not None
        }
        if not metrics:
            stats.skip(where, "no numeric metric")
            continue
        stats.readings += 1
        stats.devices.add(device_id)
        site = columns.site if columns.site is not None else _text(row.get("site"))
        device_type = (
            columns.device_type
            if columns.device_type is not None
            else _text(row.get("device_type"))
        )
        yield _Parsed(ts, device_id, metrics, site, device_type)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# never metrics, even when numeric: our wire format's bookkeeping, and a numeric device id
_NOT_METRICS = {"device_id", "seq", "v", "site", "device_type", "sent_at", "scored_at"}


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
                f"no device_id column; give --device ID, --device-column or --device-from "
                f"filename (columns: {', '.join(names)})"
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
