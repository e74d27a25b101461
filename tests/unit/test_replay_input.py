"""`edgeml replay` input: one timestamp rule for CSV and JSON, the device from the file name,
several files merged in event-time order, and the summary's counted nouns (no broker)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from edgeml.app.cli import replay as replay_cli
from edgeml.app.cli.options import counted
from edgeml.app.cli.replay import ReplayFailed, _allow_open_files, _summary
from edgeml.app.settings import Settings
from edgeml.sim.replay import (
    NaiveTimestamp,
    ReplayColumns,
    ReplayError,
    ReplayStats,
    file_readings,
    merged_readings,
    parse_timestamp,
)
from edgeml.sim.sender import SendStats

Invoke = Callable[..., tuple[int, str, str]]

# --- the timestamp rule ------------------------------------------------------------------------

_OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)  # whole minutes, as real zones are (and as ISO-8601 offsets are written)
# no deadline: the machine is shared, and a slow example is not a wrong one
PROPERTY = hypothesis_settings(deadline=None)
_TIMES = st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2999, 12, 31))


@PROPERTY
@given(moment=_TIMES, zone=_OFFSETS)
def test_an_iso_time_with_a_zone_is_that_instant(moment: dt.datetime, zone: dt.timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    assert parse_timestamp(aware.isoformat()) == aware.timestamp()
    assert parse_timestamp(aware.isoformat(), assume_utc=True) == aware.timestamp()


@PROPERTY
@given(moment=_TIMES)
def test_an_iso_time_without_a_zone_is_an_error_unless_utc_is_assumed(moment: dt.datetime) -> None:
    text = moment.isoformat(sep=" ")
    with pytest.raises(NaiveTimestamp, match="has no time zone"):
        parse_timestamp(text)
    assert parse_timestamp(text, assume_utc=True) == moment.replace(tzinfo=dt.UTC).timestamp()


# no subnormals: once a library of the full suite has set the CPU's flush-to-zero mode,
# hypothesis refuses to draw them (FloatingPointError), and no epoch is subnormal anyway
@PROPERTY
@given(seconds=st.floats(min_value=0, max_value=9.9e10, allow_nan=False, allow_subnormal=False))
def test_epoch_seconds_read_the_same_as_numbers_and_as_text(seconds: float) -> None:
    assert parse_timestamp(seconds) == parse_timestamp(repr(seconds)) == seconds


_CELLS = st.one_of(
    st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
    st.integers(min_value=10**9, max_value=2 * 10**9),
    st.builds(lambda m, z: m.replace(tzinfo=z).isoformat(), _TIMES, _OFFSETS),
)


def _write_both(folder: Path, stamps: list[object]) -> tuple[Path, Path]:
    csv_path, jsonl_path = folder / "d.csv", folder / "d.jsonl"
    cells = [s if isinstance(s, str) else repr(s) for s in stamps]
    csv_path.write_text("ts,temp\n" + "".join(f"{c},{n}\n" for n, c in enumerate(cells)))
    lines = [json.dumps({"ts": s, "temp": n}) + "\n" for n, s in enumerate(stamps)]
    jsonl_path.write_text("".join(lines))
    return csv_path, jsonl_path


@PROPERTY
@given(stamps=st.lists(_CELLS, min_size=1, max_size=20))
def test_csv_and_json_lines_give_the_same_readings(
    tmp_path_factory: pytest.TempPathFactory, stamps: list[object]
) -> None:
    csv_path, jsonl_path = _write_both(tmp_path_factory.mktemp("both"), stamps)
    columns = ReplayColumns(device="d")
    from_csv = list(file_readings(csv_path, columns=columns))
    from_json = list(file_readings(jsonl_path, columns=columns))
    assert from_csv == from_json
    assert len(from_csv) == len(stamps)


def test_a_naive_time_names_the_file_and_line_in_both_formats(tmp_path: Path) -> None:
    stamps: list[object] = ["2026-01-01T00:00:00Z", 1767225601, "2026-01-01T00:00:02"]
    csv_path, jsonl_path = _write_both(tmp_path, stamps)
    columns = ReplayColumns(device="d")
    hint = "has no time zone; add one (Z, +01:00) or pass --assume-utc to read it as UTC"
    with pytest.raises(NaiveTimestamp) as csv_error:
        list(file_readings(csv_path, columns=columns))
    assert str(csv_error.value) == f"d.csv:4: timestamp '2026-01-01T00:00:02' {hint}"
    with pytest.raises(NaiveTimestamp) as json_error:
        list(file_readings(jsonl_path, columns=columns))
    assert str(json_error.value) == f"d.jsonl:3: timestamp '2026-01-01T00:00:02' {hint}"
    for path in (csv_path, jsonl_path):
        readings = list(file_readings(path, columns=columns, assume_utc=True))
        assert [r.ts for r in readings] == [1767225600.0, 1767225601.0, 1767225602.0]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


def test_replay_of_a_naive_time_exits_2_before_connecting(
    invoke_cli: Invoke, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "pump.csv"
    path.write_text("ts,temp\n2026-01-01T00:00:00Z,1\n2026-01-01 00:00:01,2\n")
    code, out, err = invoke_cli(settings, "replay", str(path), "--device-from", "filename")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "edgeml replay: error: Invalid value for PATH: pump.csv:3: timestamp "
        "'2026-01-01 00:00:01' has no time zone; add one (Z, +01:00) or pass --assume-utc to "
        "read it as UTC"
    ]


# --- the device from the file name, and merging ------------------------------------------------


def test_device_from_filename_is_the_stem_and_wins_over_a_device_column(tmp_path: Path) -> None:
    path = tmp_path / "machine-temperature.v2.csv"
    path.write_text("device_id,ts,temp\nother,1767225600,1\nother,1767225601,2\n")
    readings = list(file_readings(path, columns=ReplayColumns(device_from="filename")))
    assert [(r.device_id, r.seq, r.metrics) for r in readings] == [
        ("machine-temperature.v2", 0, {"temp": 1.0}),
        ("machine-temperature.v2", 1, {"temp": 2.0}),
    ]


def test_without_a_device_the_error_offers_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "cpu.csv"
    path.write_text("ts,load\n1767225600,1\n")
    with pytest.raises(ReplayError, match=r"^cpu.csv: no device_id column; give --device ID, "
                       "--device-column or --device-from filename"):  # fmt: skip
        list(file_readings(path))


def _csv(path: Path, stamps: list[int], start: float = 0.0) -> Path:
    path.write_text("ts,x\n" + "".join(f"{s},{start + n}\n" for n, s in enumerate(stamps)))
    return path


def test_files_merge_in_event_time_order_with_ties_in_path_order(tmp_path: Path) -> None:
    a = _csv(tmp_path / "a.csv", [10, 20, 30, 40])
    b = _csv(tmp_path / "b.csv", [5, 20, 35])
    c = _csv(tmp_path / "c.csv", [])
    stats = ReplayStats()
    merged = list(merged_readings([a, b, c], columns=ReplayColumns(device_from="filename"),
                                  stats=stats))  # fmt: skip
    assert [(r.device_id, r.ts, r.seq) for r in merged] == [
        ("b", 5.0, 0),
        ("a", 10.0, 0),
        ("a", 20.0, 1),
        ("b", 20.0, 1),
        ("a", 30.0, 2),
        ("b", 35.0, 2),
        ("a", 40.0, 3),
    ]
    assert (stats.rows, stats.readings, stats.devices) == (7, 7, {"a", "b"})


def test_a_device_split_over_files_counts_its_seq_over_all_of_them(tmp_path: Path) -> None:
    later = tmp_path / "2026-02.csv"
    later.write_text("device_id,ts,x\np1,300,3\np2,310,9\np1,400,4\n")
    earlier = tmp_path / "2026-01.csv"
    earlier.write_text("device_id,ts,x\np1,100,1\np1,200,2\np2,250,8\n")
    merged = list(merged_readings([later, earlier]))  # argument order does not matter
    by_device: dict[str, list[tuple[int, float]]] = {}
    for r in merged:
        by_device.setdefault(r.device_id, []).append((r.seq, r.ts))
    assert by_device == {
        "p1": [(0, 100.0), (1, 200.0), (2, 300.0), (3, 400.0)],
        "p2": [(0, 250.0), (1, 310.0)],
    }


def test_skips_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("ts,x\n1,1\nsoon,2\n3,x\n")
    stats = ReplayStats()
    list(merged_readings([path], columns=ReplayColumns(device="d"), stats=stats))
    assert stats.examples == ["s.csv:3: bad timestamp", "s.csv:4: no numeric metric"]


# --- counted nouns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [(0, "device", "0 devices"), (1, "device", "1 device"), (2, "device", "2 devices"),
     (1, "file", "1 file"), (1234, "reading", "1,234 readings")],
)  # fmt: skip
def test_counted(n: int, noun: str, text: str) -> None:
    assert counted(n, noun) == text


def test_the_summary_counts_readings_devices_files_and_messages() -> None:
    one = SendStats(readings=1, messages=1, readings_per_device={"d": 1}, finished_at=2.0)
    stats = ReplayStats(rows=1, readings=1)
    assert _summary(one, stats, 1) == (
        "replay: 1 reading from 1 device in 1 file, 1 message; 1 row, 0 skipped; 2.0 s, "
        "0 readings/s"
    )
    many = SendStats(readings=30, messages=3, readings_per_device={"a": 10, "b": 20},
                     finished_at=1.0)  # fmt: skip
    stats = ReplayStats(rows=32, readings=30, skipped={"bad timestamp": 2})
    assert _summary(many, stats, 3) == (
        "replay: 30 readings from 2 devices in 3 files, 3 messages; 32 rows, 2 skipped "
        "(bad timestamp: 2); 1.0 s, 30 readings/s"
    )


# --- one open file per path while merging ------------------------------------------------------


def test_the_open_file_limit_is_raised_to_fit_the_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(replay_cli.resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(replay_cli.resource, "setrlimit", lambda _, limits: calls.append(limits))
    _allow_open_files(100)  # 100 files + 256 for the producer and the rest: fits in 1024
    assert calls == []
    _allow_open_files(2000)
    assert calls == [(2256, 4096)]
    with pytest.raises(ReplayFailed, match="5,000 files need 5,256 open files and this process "
                       "may open 4,096; replay them in parts"):  # fmt: skip
        _allow_open_files(5000)
