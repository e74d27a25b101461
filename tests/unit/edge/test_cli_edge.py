"""`edgeml edge run`: bad flags and settings are one line (exit 2), an unusable database is one
line (exit 1), and stdin / file sources score every valid line while bad ones are logged."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edgeml.app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


# Every case also gets a tiny, offline, finite run: one that wrongly started ends at once.
_SAFE = ["--web-port", "0", "--no-sync", "--until", "scored", "--devices", "1", "--count", "1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--source", "nope"], 2, "'nope'; choose one of: sim, file, stdin"),
        (["--source", "file"], 2, "--source file needs --file PATH"),
        (["--until", "later"], 2, "choose one of: forever, scored, synced"),
        (["--raw", "some"], 2, "choose one of: off, on, downsample"),
        (["--db", "/proc/no/such/edge.db"], 1, "cannot open the edge database"),
    ],
)
def test_bad_flags_are_one_line(
    invoke_cli: Callable[..., tuple[int, str, str]],
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    args: list[str],
    code: int,
    message: str,
) -> None:
    argv = ["edge", "run", *_SAFE, "--db", str(tmp_path / "e.db"), *args]
    status, _, err = invoke_cli(settings_factory(), *argv)
    assert status == code, err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGEML_EDGE_OUTBOX_MAX_BYTES": "5"}, "EDGEML_EDGE_OUTBOX_MAX_BYTES='5'"),
        ({"EDGEML_EDGE_WEBHOOK_URL": "ftp://x"}, "must start with http://"),
        ({"EDGEML_EDGE_PREDICTIONS_ON_FULL": "drop-all"}, "EDGEML_EDGE_PREDICTIONS_ON_FULL"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    done = _run(tmp_path, ["--devices", "1", "--count", "1"], env=env)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def _lines(n: int) -> list[bytes]:
    base = 1_767_225_600.0
    return [
        orjson.dumps(
            {
                "device_id": f"d{i % 2}",
                "ts": base + i,
                "seq": i // 2,
                "metrics": {"temperature": 20.0 + (i % 5) * 0.1},
            }
        )
        for i in range(n)
    ]


def _run(
    tmp_path: Path, args: list[str], stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env = {**base, "EDGEML_EDGE_REGISTRY_ROOT": str(tmp_path / "no-registry"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgeml.app", "edge", "run", "--db", str(tmp_path / "e.db"),
         "--web-port", "0", "--no-sync", "--until", "scored", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def _predictions(tmp_path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(tmp_path / "e.db")
    try:
        query = "SELECT device_id, seq FROM outbox WHERE stream = 'predictions' ORDER BY id"
        return [(str(d), int(s)) for d, s in conn.execute(query)]
    finally:
        conn.close()


def test_stdin_lines_are_scored_and_a_bad_line_does_not_stop_the_agent(tmp_path: Path) -> None:
    lines = _lines(40)
    lines.insert(10, b"{not json")
    done = _run(tmp_path, ["--source", "stdin"], b"\n".join(lines) + b"\n")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "invalid input (InvalidJson)" in done.stderr.decode()
    assert sorted(_predictions(tmp_path)) == sorted((f"d{i % 2}", i // 2) for i in range(40))


def test_a_file_source_resumes_without_rescoring(tmp_path: Path) -> None:
    path = tmp_path / "readings.jsonl"
    path.write_bytes(b"\n".join(_lines(30)) + b"\n")
    first = _run(tmp_path, ["--source", "file", "--file", str(path), "--format", "wire"])
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    again = _run(tmp_path, ["--source", "file", "--file", str(path), "--format", "wire"])
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert "after message 30" in again.stderr.decode()
    assert len(_predictions(tmp_path)) == 30


def test_a_web_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(tmp_path, ["--devices", "1", "--count", "1", "--web-port", str(port)])
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"cannot serve /health and /metrics on 127.0.0.1:{port}" in err
    assert err.strip().splitlines()[-1].startswith("edgeml: error:"), err
