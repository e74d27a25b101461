"""`edgeml replay DIR --device-from filename` through the real broker and worker, read back with
`edgeml tail predictions --from-beginning --until-end --json`: one prediction per reading of
every file, and the tail exits by itself. Both commands get the broker from `--bootstrap` while
EDGEML_BOOTSTRAP_SERVERS points at a port nothing serves."""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]
START = 1_748_736_000  # 2025-06-01T00:00:00Z
NOWHERE = "127.0.0.1:9"  # the discard port: refuses at once


def _history(folder: Path) -> dict[str, list[float]]:
    """Three devices, three samplings and both formats (and two files replay must leave out);
    returns each device's event times in file order."""
    folder.mkdir()
    times: dict[str, list[float]] = {}
    seconds = [START + n for n in range(50)]  # 1 s, epoch seconds
    (folder / "press-01.csv").write_text(
        "ts,pressure\n" + "".join(f"{t},{100 + math.sin(t / 7):.3f}\n" for t in seconds)
    )
    times["press-01"] = [float(t) for t in seconds]
    minutes = [START + 300 * n for n in range(40)]  # 5 min, ISO-8601 with Z
    (folder / "cpu-db.csv").write_text(
        "timestamp,cpu,disk\n"
        + "".join(
            f"{_iso(t)}Z,{40 + 10 * math.sin(n / 5):.2f},{0.5 + n / 100:.2f}\n"
            for n, t in enumerate(minutes)
        )
    )
    times["cpu-db"] = [float(t) for t in minutes]
    hours = [START + 3600 * n for n in range(30)]  # 1 h, JSON Lines, ISO-8601 at +02:00
    (folder / "traffic.jsonl").write_text(
        "".join(
            json.dumps({"time": _iso(t + 7200) + "+02:00", "vehicles": 20 + n % 7}) + "\n"
            for n, t in enumerate(hours)
        )
    )
    times["traffic"] = [float(t) for t in hours]
    (folder / "labels.json").write_text('{\n "format": "edgeml-corpus-labels/1"\n}\n')
    (folder / "README.txt").write_text("three devices\n")
    return times


def _iso(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _tail(run_cli: Run, elsewhere: Settings, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return run_cli(elsewhere, "tail", "predictions", "--from-beginning", "--until-end", "--json",
                   "--bootstrap", bootstrap, timeout=120)  # fmt: skip


def test_a_replayed_directory_gives_one_prediction_per_reading_of_every_file(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Run,
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    elsewhere = settings.model_copy(update={"bootstrap_servers": NOWHERE})
    bootstrap = settings.bootstrap_servers
    times = _history(tmp_path / "history")
    expected = {(d, seq): ts for d, stamps in times.items() for seq, ts in enumerate(stamps)}
    worker_factory(settings)

    replay = run_cli(elsewhere, "replay", str(tmp_path / "history"), "--device-from", "filename",
                     "--no-progress", "--bootstrap", bootstrap, timeout=120)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.startswith(
        "replay: 120 readings from 3 devices in 3 files, 120 messages; 120 rows, 0 skipped; "
    ), replay.stdout

    # Each tail stops at the end offsets it found at its start; the worker may still be
    # writing, so read again until every reading has its prediction (each run exits by itself).
    for _ in range(60):
        tail = _tail(run_cli, elsewhere, bootstrap)
        assert tail.returncode in (0, 1), tail.stderr  # 1: no prediction written yet
        records: list[dict[str, Any]] = [json.loads(line) for line in tail.stdout.splitlines()]
        if len(records) >= len(expected):
            break
    assert tail.returncode == 0, tail.stderr
    pairs = Counter((r["device_id"], r["seq"]) for r in records)
    assert pairs == Counter(dict.fromkeys(expected, 1))  # each reading exactly once, no other
    assert {(r["device_id"], r["seq"]): r["ts"] for r in records} == expected
    topic = settings.topic("predictions")
    assert tail.stderr.splitlines()[-1].startswith("edgeml tail: 120 records matched in "), (
        tail.stderr
    )
    assert tail.stderr.splitlines()[-1].endswith(f" up to the end of {topic}"), tail.stderr

    again = _tail(run_cli, elsewhere, bootstrap)  # the same topic gives the same records
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.splitlines()) == sorted(tail.stdout.splitlines())
