"""Device state in SQLite and the one-transaction batch commit: a restart resumes every detector
exactly (the same scores as one uninterrupted run), and a crash inside a batch transaction
leaves neither state nor outputs of that batch (no lost and no duplicate rows after resuming)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from edgeml.edge.db import connect, get_meta
from edgeml.edge.outbox import Outbox, OutboxLimits
from edgeml.edge.records import RecordOptions
from edgeml.edge.runner import BatchRunner, position_key
from edgeml.edge.state import SqliteStateStore
from edgeml.models.pipeline import Inbound, ReadingPipeline
from edgeml.models.scoring import Scorer
from edgeml.models.stores import BytesStateStore
from edgeml.sim.generator import SimConfig, simulate

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_767_300_000.0
CONFIG = SimConfig(devices=4, count=300, seed=7, warmup=30.0, incident_every=60.0)
BATCH = 50


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return [orjson.dumps(r.to_wire()) for r in simulate(CONFIG).readings()]


@pytest.fixture(scope="module")
def reference(messages: list[bytes]) -> dict[tuple[str, int], tuple[float, bool]]:
    """(device, seq) -> (anomaly score, is_anomaly) of one uninterrupted in-memory run."""
    pipeline = ReadingPipeline(Scorer(), clock=lambda: NOW)
    store = BytesStateStore()
    out: dict[tuple[str, int], tuple[float, bool]] = {}
    for i in range(0, len(messages), BATCH):
        batch = [Inbound(None, m, partition=0) for m in messages[i : i + BATCH]]
        for s in pipeline.process(batch, store).scored:
            out[(s.reading.device_id, s.reading.seq)] = (s.anomaly_score, s.is_anomaly)
    return out


def _runner(path: Path) -> BatchRunner:
    conn = connect(path)
    return BatchRunner(
        ReadingPipeline(Scorer(), clock=lambda: NOW),
        SqliteStateStore(conn, cache_devices=2),  # smaller than the fleet: the SELECT path too
        Outbox(conn, OutboxLimits(2**30)),
        RecordOptions("agent-test"),
        clock=lambda: NOW,
    )


def _run(runner: BatchRunner, messages: list[bytes], start: int, stop: int) -> None:
    for i in range(start, stop, BATCH):
        end = min(i + BATCH, stop)
        runner.run(messages[i:end], ("sim", end))


def _predictions(conn: sqlite3.Connection) -> dict[tuple[str, int], tuple[float, bool]]:
    out: dict[tuple[str, int], tuple[float, bool]] = {}
    for device, seq, value in conn.execute(
        "SELECT device_id, seq, value FROM outbox WHERE stream = 'predictions' ORDER BY id"
    ):
        assert (device, seq) not in out, f"duplicate prediction {device}:{seq}"
        record = orjson.loads(value)
        assert record["origin"] == "edge" and record["agent_id"] == "agent-test"
        out[(device, seq)] = (record["anomaly_score"], record["is_anomaly"])
    return out


def test_a_restart_resumes_every_detector_where_it_was(
    tmp_path: Path, messages: list[bytes], reference: dict[tuple[str, int], tuple[float, bool]]
) -> None:
    half = len(messages) // 2
    first = _runner(tmp_path / "e.db")
    _run(first, messages, 0, half)
    first.conn.close()

    second = _runner(tmp_path / "e.db")  # a new process: new connection, pipeline, scorer
    _run(second, messages, half, len(messages))

    assert _predictions(second.conn) == reference


def test_a_reset_state_would_be_seen(
    tmp_path: Path, messages: list[bytes], reference: dict[tuple[str, int], tuple[float, bool]]
) -> None:
    # the control of the test above: the second half scored from fresh states differs
    half = len(messages) // 2
    fresh = _runner(tmp_path / "e.db")
    _run(fresh, messages, half, len(messages))
    scored = _predictions(fresh.conn)
    assert any(scored[key] != reference[key] for key in scored)


def test_a_failed_commit_rolls_back_state_and_outputs_together(
    tmp_path: Path, messages: list[bytes], reference: dict[tuple[str, int], tuple[float, bool]]
) -> None:
    runner = _runner(tmp_path / "e.db")
    _run(runner, messages, 0, 2 * BATCH)
    real_add = runner.outbox.add
    calls = 0

    def failing_add(record: object) -> bool:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(record)  # type: ignore[arg-type]

    runner.outbox.add = failing_add  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        runner.run(messages[2 * BATCH : 3 * BATCH], ("sim", 3 * BATCH))
    assert get_meta(runner.conn, position_key("sim")) == str(2 * BATCH)
    assert len(_predictions(runner.conn)) == 2 * BATCH  # nothing of the failed batch
    runner.outbox.add = real_add  # type: ignore[method-assign]

    _run(runner, messages, 2 * BATCH, len(messages))  # the same batch again, then the rest
    assert _predictions(runner.conn) == reference
    assert runner.outbox.count("added:predictions") == len(messages)


def test_sigkill_inside_a_batch_transaction_loses_and_duplicates_nothing(
    tmp_path: Path, reference: dict[tuple[str, int], tuple[float, bool]]
) -> None:
    db = tmp_path / "e.db"
    args = [
        sys.executable, "-m", "edgeml.app", "edge", "run", "--source", "sim",
        "--devices", str(CONFIG.devices), "--count", str(CONFIG.count),
        "--seed", str(CONFIG.seed), "--warmup", str(CONFIG.warmup),
        "--incident-every", str(CONFIG.incident_every), "--db", str(db),
        "--web-port", "0", "--no-sync", "--until", "scored", "--agent-id", "agent-test",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env["EDGEML_EDGE_BATCH_MAX"] = str(BATCH)
    killed = subprocess.run(
        args, cwd=ROOT, env={**env, "EDGEML_EDGE_FAULT_KILL_IN_BATCH": "5"},
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    conn = sqlite3.connect(db)
    committed = _predictions(conn)
    position = int(get_meta(conn, "position:" + _sim_name()) or 0)
    conn.close()
    assert len(committed) == position == 4 * BATCH  # batches 1-4 only: the 5th rolled back

    resumed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    conn = sqlite3.connect(db)
    try:
        assert _predictions(conn) == reference
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    finally:
        conn.close()
    assert counters["added:predictions"] == CONFIG.devices * CONFIG.count
    assert not any(name.startswith("drop:") for name in counters), counters


def _sim_name() -> str:
    c = CONFIG
    return (
        f"sim:seed={c.seed}:devices={c.devices}:count={c.count}:interval={c.interval}:"
        f"start={c.start_ts}:warmup={c.warmup}:incident_every={c.incident_every}"
    )
