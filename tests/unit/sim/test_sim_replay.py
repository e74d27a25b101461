"""Replay parsing: CSV and JSONL rows to readings, column options, timestamps, bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeml.sim.replay import (
    ReplayColumns,
    ReplayError,
    ReplayStats,
    parse_timestamp,
    read_rows,
    to_readings,
)

CSV = """timestamp,device,temp,hum,label
2026-01-01T00:00:00Z,pump-1,20.5,40,ok
2026-01-01T00:00:01Z,pump-2,21.0,41.5,ok
2026-01-01T00:00:02,pump-1,,42,ok
not-a-time,pump-1,22,43,ok
2026-01-01T00:00:03Z,pump-1,nan,,ok
1767225604,pump-2,23.25,44,ok
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_device_column_and_default_metrics(tmp_path: Path) -> None:
    stats = ReplayStats()
    rows = read_rows(_write(tmp_path, "data.csv", CSV))
    readings = list(
        to_readings(rows, ReplayColumns(device_column="device"), stats, assume_utc=True)
    )
    assert [(r.device_id, r.seq) for r in readings] == [
        ("pump-1", 0),
        ("pump-2", 0),
        ("pump-1", 1),
        ("pump-2", 1),
    ]
    assert readings[0].ts == 1767225600.0
    assert readings[0].metrics == {"temp": 20.5, "hum": 40.0}
    assert readings[2].ts == 1767225602.0  # naive ISO = UTC with assume_utc
    assert readings[2].metrics == {"hum": 42.0}  # empty cell left out
    assert readings[3].ts == 1767225604.0
    assert stats.rows == 6 and stats.readings == 4
    assert stats.skipped == {"bad timestamp": 1, "no numeric metric": 1}


def test_csv_fixed_device_and_metric_columns(tmp_path: Path) -> None:
    rows = read_rows(_write(tmp_path, "data.csv", CSV))
    columns = ReplayColumns(device="dev-x", metric_columns=("temp",), site="lab")
    readings = list(to_readings(rows, columns, assume_utc=True))
    assert {r.device_id for r in readings} == {"dev-x"}
    assert [r.seq for r in readings] == [0, 1, 2]
    assert all(set(r.metrics) == {"temp"} and r.site == "lab" for r in readings)


def test_jsonl_flat_and_wire_format(tmp_path: Path) -> None:
    text = (
        '{"device_id": "a", "ts": 1767225600500, "temperature": 20.0, "seq": 99}\n'
        "\n"
        '{"device_id": "a", "ts": "2026-01-01T00:00:01+00:00", "temperature": 21.0}\n'
    )
    readings = list(to_readings(read_rows(_write(tmp_path, "d.jsonl", text))))
    assert [r.ts for r in readings] == [1767225600.5, 1767225601.0]  # ms detected
    assert [r.seq for r in readings] == [0, 1]  # seq is recounted, not taken from the file
    assert readings[0].metrics == {"temperature": 20.0}
    wire = (
        '{"device_id": "b", "ts": 5.0, "seq": 0, "v": 1, "site": "s",'
        ' "metrics": {"x": 1.5, "y": 2}}\n'
    )
    (reading,) = to_readings(read_rows(_write(tmp_path, "w.ndjson", wire)))
    assert reading.metrics == {"x": 1.5, "y": 2.0} and reading.site == "s"


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("ts,temp\n1,2\n", ReplayColumns(), "no device_id column"),
        ("device_id,when,temp\na,1,2\n", ReplayColumns(), "no timestamp column"),
        ("device_id,ts,name\na,1,x\n", ReplayColumns(), "no numeric columns"),
        ("device_id,ts,t\na,1,2\n", ReplayColumns(metric_columns=("q",)), "no column(s) q"),
        ("d,ts,t\na,1,2\n", ReplayColumns(device="x", device_column="d"), "not both"),
    ],
)
def test_bad_options_fail_on_first_row(
    tmp_path: Path, text: str, columns: ReplayColumns, message: str
) -> None:
    with pytest.raises(ReplayError, match=message.replace("(", r"\(").replace(")", r"\)")):
        list(to_readings(read_rows(_write(tmp_path, "x.csv", text)), columns))


def test_unknown_format_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="unknown format"):
        list(read_rows(_write(tmp_path, "x.txt", "a")))
    with pytest.raises(ReplayError, match=":2: not JSON"):
        list(read_rows(_write(tmp_path, "x.jsonl", '{"a": 1}\n{oops\n')))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1767225600, 1767225600.0),
        ("1767225600.25", 1767225600.25),
        (1767225600250, 1767225600.25),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        ("2026-01-01 00:00:00Z", 1767225600.0),
        ("garbage", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_parse_timestamp(value: object, expected: float | None) -> None:
    assert parse_timestamp(value) == expected
