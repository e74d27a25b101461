"""`edgeml simulate`, `evaluate` and `replay` refuse bad arguments before they touch a broker.

Each case runs the real console entry (`app.cli.main`) in-process against the discard-port
broker address: a command that got past its checks would fail to connect and exit 1, so exit 2
with the option's own message shows the check fired first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from edgeml.app.cli.simulate import parse_start
from edgeml.app.settings import Settings

Invoke = Callable[..., tuple[int, str, str]]


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


def _error(err: str) -> str:
    """The text after `<command>: error: ` on the single stderr line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0].split(": error: ", 1)[1]


SIMULATE_CASES = [
    (["--devices", "0"], "Invalid value for --devices: 0 is not in [1, 100000]"),
    (["--count", "0"], "Invalid value for --count: 0 is not in [1, 10000000]"),
    (["--interval", "0.001"], "Invalid value for --interval: 0.001 is not in [0.01, 86400]"),
    (["--batch", "10001"], "Invalid value for --batch: 10001 is not in [1, 10000]"),
    (["--malformed", "-1"], "Invalid value for --malformed: -1 is not in [0, 1000000]"),
    (["--day-seconds", "59"], "Invalid value for --day-seconds: 59.0 is not in [60, 10000000]"),
    (["--incident-every", "0.5"], "Invalid value for --incident-every: 0.5 is not in [1, "),
    (["--warmup", "-1"], "Invalid value for --warmup: -1.0 is not in [0, 10000000]"),
    (["--rate", "-1"], "Invalid value for --rate: -1.0 is not in [0, 10000000]"),
    (
        ["--devices", "100000", "--count", "501"],
        "Invalid value for --count: 100000 x 501 readings is too many for one run",
    ),
    (["--start", "yesterday"], "Invalid value for --start: 'yesterday' is not ISO-8601"),
]


@pytest.mark.parametrize(("args", "message"), SIMULATE_CASES, ids=[c[0][0] for c in SIMULATE_CASES])
def test_simulate_refuses_out_of_range_options(
    invoke_cli: Invoke, settings: Settings, args: list[str], message: str
) -> None:
    code, out, err = invoke_cli(settings, "simulate", *args)
    assert (code, out) == (2, "")
    assert _error(err).startswith(message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600", 1_767_225_600.0),
        ("1767225600.25", 1_767_225_600.25),
        ("2026-01-01T00:00:00", 1_767_225_600.0),  # no timezone: UTC
        ("2026-01-01T00:00:00Z", 1_767_225_600.0),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600.0),
    ],
)
def test_parse_start_takes_epoch_seconds_or_iso_8601(text: str, expected: float) -> None:
    assert parse_start(text) == expected
    assert dt.datetime.fromtimestamp(parse_start(text), dt.UTC).year == 2026


def test_parse_start_names_the_option_it_refuses() -> None:
    with pytest.raises(typer.BadParameter) as refused:
        parse_start("2026-13-01")
    assert refused.value.param_hint == "--start"


@pytest.fixture
def truth_file(tmp_path: Path) -> Path:
    """A valid one-device ground truth (summary line only), as `simulate -g` writes it."""
    from edgeml.sim.truth import GroundTruth, RunSummary

    summary = RunSummary(
        seed=0,
        start_ts=1_767_225_600.0,
        end_ts=1_767_225_602.0,
        interval=1.0,
        readings_per_device={"d1": 3},
        run_started_at=1_767_225_600.0,
        run_finished_at=1_767_225_601.0,
        topic="t-sensor-readings",
    )
    path = tmp_path / "truth.jsonl"
    GroundTruth(summary=summary, incidents=()).write(path)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "-1"], "Invalid value for --timeout: -1.0 is not in [0, 86400]"),
        (["--tolerance", "86401"], "Invalid value for --tolerance: 86401.0 is not in [0, 86400]"),
        (["--horizon", "-5"], "Invalid value for --horizon: -5.0 is not in [0, 1e+07]"),
        (["--threshold", "1.5"], "Invalid value for --threshold: 1.5 is not in [0, 1]"),
    ],
)
def test_evaluate_refuses_out_of_range_options(
    invoke_cli: Invoke, settings: Settings, truth_file: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke_cli(settings, "evaluate", "-g", str(truth_file), *args)
    assert (code, out) == (2, "")
    assert _error(err) == message


def test_evaluate_refuses_a_file_that_is_not_a_ground_truth(
    invoke_cli: Invoke, settings: Settings, tmp_path: Path
) -> None:
    readings = tmp_path / "readings.jsonl"
    readings.write_text('{"device_id": "d1", "ts": 1767225600, "metrics": {"temp": 1}}\n')
    code, out, err = invoke_cli(settings, "evaluate", "-g", str(readings), "--json")
    assert (code, out) == (2, "")
    assert _error(err).startswith("Invalid value for --ground-truth: not a ground-truth file: ")


def test_evaluate_reports_a_broker_it_cannot_reach_in_one_line(
    invoke_cli: Invoke, settings: Settings, truth_file: Path
) -> None:
    code, out, err = invoke_cli(settings, "evaluate", "-g", str(truth_file), "--timeout", "0")
    assert (code, out) == (1, "")
    assert _error(err).startswith(f"cannot reach Kafka at {settings.bootstrap_servers}")


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "history.csv"
    path.write_text("device_id,ts,temp\nd1,2026-01-01T00:00:00Z,21.5\n")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "-1"], "Invalid value for --speed: -1.0 is not in [0, 1000000]"),
        (["--batch", "0"], "Invalid value for --batch: 0 is not in [1, 10000]"),
        (["--format", "xml"], "Invalid value for --format: 'xml'; choose one of: csv, jsonl"),
        (["--metric-columns", " , "], "Invalid value for --metric-columns: no column names"),
        (
            ["--metric-columns", "temp,pressure"],
            "Invalid value for PATH: history.csv: no column(s) pressure; columns: device_id, ts, "
            "temp",
        ),
        (
            ["--device", "d9", "--device-column", "device_id"],
            "Invalid value for --device: give either --device or --device-column, not both",
        ),
        (
            ["--device-from", "name"],
            "Invalid value for --device-from: 'name'; choose one of: column, filename",
        ),
        (
            ["--device-from", "filename", "--device", "d9"],
            "Invalid value for --device-from: --device-from filename takes the id from the file "
            "name; leave out --device and --device-column",
        ),
        (["--bootstrap", " "], "Invalid value for --bootstrap: empty; give HOST:PORT"),
    ],
)
def test_replay_refuses_bad_options_before_connecting(
    invoke_cli: Invoke, settings: Settings, csv_file: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke_cli(settings, "replay", str(csv_file), *args)
    assert (code, out) == (2, "")
    assert _error(err) == message


def test_replay_of_rows_without_readings_sends_nothing_and_says_why(
    invoke_cli: Invoke, settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("device_id,ts,temp\nd1,not-a-time,1\n,2026-01-01T00:00:00Z,2\n")
    # No broker is reachable: exit 0 shows nothing tried to connect.
    code, out, err = invoke_cli(settings, "replay", str(empty), "--no-progress")
    assert (code, err) == (0, "")
    assert out == (
        "replay: nothing to send (2 rows, skipped: {'bad timestamp': 1, 'no device id': 1})\n"
    )
