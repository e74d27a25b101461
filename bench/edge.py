"""`python -m bench.edge`: the edge agent's figures (issue #13, item 5) on one core.

    python -m bench.edge                      # 20 devices x 2,500 readings, own broker
    python -m bench.edge --count 500 --bootstrap 127.0.0.1:9092

Pinned to one CPU (`sched_setaffinity`), one ONNX thread, the shipped failure model, in-process
(no subprocess or network in the timed parts):

1. scoring: the simulated fleet through `BatchRunner.run` in batches of `--batch` (score + one
   SQLite commit each, as `edgeml edge run` does): readings/s, and per-batch latency p50/p99
   (a reading's local latency is its batch's, plus the wait to fill it: `batch_within_s`);
   also batches of 1 (`--latency-readings` of them): the latency of a reading scored alone;
2. outbox writes alone: the scored run's records added again to a fresh outbox in
   transactions of `--batch`: rows/s and MB/s (the durable-store ceiling without scoring);
3. sync: the scored outbox forwarded to a real broker by the agent's own `Forwarder`
   (idempotent producer, acks=all, chunks of `sync_chunk_rows`) until it is empty: rows/s, MB/s;
4. RSS: the peak of a real `edgeml edge run --source sim ... --until scored --no-sync` process
   over the same fleet (its `VmHWM`, read from /proc while it runs: `ru_maxrss` of a child
   forked from this process starts at this process's peak; also its wall time, start-up included),
   and
   this bench process's own peak (which also holds the fleet's messages and records).

The broker: `--bootstrap`, else a single-node broker of its own in a temporary folder
(`bench.faults.procs.Broker`, like `make faults`). Prints the figures and a last JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    BenchEnv,
    create_topics,
    emit,
    percentiles,
    print_json,
    rss_bytes,
    versions,
)

__all__ = ["main", "run"]


def _pin_one_core() -> tuple[int | None, set[int]]:
    """Pin this process to one CPU; returns it and the CPUs to restore afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        return None, set()
    before = set(os.sched_getaffinity(0))
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    return cpu, before


def _messages(devices: int, count: int, seed: int) -> list[bytes]:
    import orjson

    from edgeml.sim.generator import SimConfig, simulate

    config = SimConfig(devices=devices, count=count, seed=seed, warmup=60.0, incident_every=300.0)
    return [orjson.dumps(r.to_wire()) for r in simulate(config).readings()]


def _agent(db: Path, **overrides: Any) -> Any:
    from edgeml.edge.agent import EdgeAgent
    from edgeml.edge.settings import EdgeSettings

    settings = EdgeSettings(db_path=db, web_port=0, agent_id="bench-edge", **overrides)
    return EdgeAgent(settings)


def _score(db: Path, messages: list[bytes], batch: int) -> dict[str, Any]:
    agent = _agent(db, sync_enabled=False)
    times_ms: list[float] = []
    began = time.perf_counter()
    for start in range(0, len(messages), batch):
        t0 = time.perf_counter()
        agent.runner.run(messages[start : start + batch], ("bench", start + batch))
        times_ms.append((time.perf_counter() - t0) * 1e3)
    elapsed = time.perf_counter() - began
    stored = agent.outbox.total_bytes
    rows = agent.outbox.total_rows
    model = agent.model_version
    agent.conn.close()
    return {
        "readings": len(messages),
        "seconds": round(elapsed, 3),
        "readings_per_s": round(len(messages) / elapsed, 1),
        "batch": batch,
        "batch_ms": percentiles(times_ms),
        "outbox_rows": rows,
        "outbox_record_bytes": stored,
        "bytes_per_row": round(stored / rows, 1) if rows else None,
        "db_bytes": db.stat().st_size + _size(db.with_name(db.name + "-wal")),
        "model": model,
    }


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _latency_alone(db: Path, messages: list[bytes]) -> dict[str, Any]:
    agent = _agent(db, sync_enabled=False)
    times_ms: list[float] = []
    for message in messages:
        t0 = time.perf_counter()
        agent.runner.run([message])
        times_ms.append((time.perf_counter() - t0) * 1e3)
    agent.conn.close()
    return {"readings": len(messages), "ms": percentiles(times_ms)}


def _outbox_writes(source_db: Path, db: Path, batch: int) -> dict[str, Any]:
    from edgeml.edge.db import connect, transaction
    from edgeml.edge.outbox import Outbox, OutboxLimits, OutboxRecord

    src = sqlite3.connect(source_db)
    records = [
        OutboxRecord(s, d, int(q), u, bytes(k), bytes(v), float(t))
        for s, d, q, u, k, v, t in src.execute(
            "SELECT stream, device_id, seq, uid, key, value, event_ts FROM outbox ORDER BY id"
        )
    ]
    src.close()
    conn = connect(db)
    outbox = Outbox(conn, OutboxLimits(max_bytes=1 << 34))
    began = time.perf_counter()
    for start in range(0, len(records), batch):
        with transaction(conn):
            for record in records[start : start + batch]:
                outbox.add(record)
            outbox.persist()
    elapsed = time.perf_counter() - began
    size = sum(r.size for r in records)
    conn.close()
    return {
        "rows": len(records),
        "seconds": round(elapsed, 3),
        "rows_per_s": round(len(records) / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 2),
    }


async def _sync(db: Path, bootstrap: str, prefix: str) -> dict[str, Any]:
    from edgeml.edge.sources import ThreadedSource

    agent = _agent(db, bootstrap_servers=bootstrap, topic_prefix=prefix, model_updates=False)
    rows, size = agent.outbox.total_rows, agent.outbox.total_bytes
    began = time.perf_counter()
    await agent.run(ThreadedSource(None, lambda: iter(())), "synced")
    elapsed = time.perf_counter() - began
    return {
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed, 1),
        "mb_per_s": round(size / elapsed / 1e6, 2),
        "includes": "producer start and first metadata (one connect)",
    }


def _agent_process(db: Path, devices: int, count: int, seed: int, batch: int) -> dict[str, Any]:
    """One real `edgeml edge run` over the fleet, offline, pinned to this bench's CPU."""
    import subprocess
    import sys

    argv = [
        sys.executable, "-m", "edgeml.app", "edge", "run", "--source", "sim",
        "--devices", str(devices), "--count", str(count), "--seed", str(seed),
        "--warmup", "60", "--incident-every", "300", "--db", str(db), "--no-sync",
        "--web-port", "0", "--until", "scored", "--loglevel", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env["EDGEML_EDGE_BATCH_MAX"] = str(batch)
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _hwm(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"edgeml edge run exited {proc.returncode}")
    return {
        "readings": devices * count,
        "seconds": round(time.perf_counter() - began, 2),
        "peak_rss_mib": round(peak / 2**20, 1),
    }


def _hwm(pid: int) -> int:
    """The peak resident set (VmHWM) of a running process, bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run(
    bootstrap: str | None,
    *,
    devices: int = 20,
    count: int = 2500,
    batch: int = 200,
    latency_readings: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    cpu, before = _pin_one_core()
    try:
        return _run(bootstrap, cpu, devices, count, batch, latency_readings, seed)
    finally:
        if before:  # `python -m bench` goes on with its other parts
            os.sched_setaffinity(0, before)


def _run(
    bootstrap: str | None,
    cpu: int | None,
    devices: int,
    count: int,
    batch: int,
    latency_readings: int,
    seed: int,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    emit(f"edge bench: {devices} devices x {count} readings, batches of {batch}, cpu {cpu}")
    messages = _messages(devices, count, seed)
    scored = _score(work / "edge.db", messages, batch)
    emit(
        f"  scoring + commit: {scored['readings']:,} readings in {scored['seconds']} s = "
        f"{scored['readings_per_s']:,.0f} readings/s; batch of {batch}: p50 "
        f"{scored['batch_ms']['p50']:.1f} ms, p99 {scored['batch_ms']['p99']:.1f} ms"
    )
    alone = _latency_alone(work / "alone.db", messages[:latency_readings])
    emit(
        f"  one reading per batch: p50 {alone['ms']['p50']:.2f} ms, p99 {alone['ms']['p99']:.2f} ms"
    )
    writes = _outbox_writes(work / "edge.db", work / "writes.db", batch)
    emit(
        f"  outbox writes alone: {writes['rows_per_s']:,.0f} rows/s ({writes['mb_per_s']} MB/s), "
        f"{scored['bytes_per_row']} B per record, db {scored['db_bytes'] / 1e6:.1f} MB"
    )
    broker = None
    if bootstrap is None:
        from bench.faults.procs import Broker

        broker = Broker.start_own(work / "broker")
        bootstrap = broker.bootstrap
    prefix = f"bench-edge-{uuid.uuid4().hex[:6]}-"
    create_topics(
        BenchEnv(bootstrap=bootstrap), [f"{prefix}predictions", f"{prefix}anomaly-alerts"]
    )
    try:
        synced = asyncio.run(_sync(work / "edge.db", bootstrap, prefix))
    finally:
        if broker is not None:
            broker.stop()
    emit(
        f"  sync to Kafka: {synced['rows']:,} rows in {synced['seconds']} s = "
        f"{synced['rows_per_s']:,.0f} rows/s ({synced['mb_per_s']} MB/s)"
    )
    process = _agent_process(work / "process.db", devices, count, seed, batch)
    emit(
        f"  `edgeml edge run` process: {process['readings']:,} readings in {process['seconds']} s "
        f"(start-up included), peak RSS {process['peak_rss_mib']} MiB"
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    memory = {
        "agent_process_peak_rss_mib": process["peak_rss_mib"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rss_mib": round(rss_bytes(os.getpid()) / 2**20, 1),
    }
    emit(f"  this bench process: peak RSS {memory['peak_rss_mib']} MiB (holds the messages)")
    return {
        "bench": "edge",
        "cpu": cpu,
        "scoring": scored,
        "one_reading_batches": alone,
        "outbox_writes": writes,
        "sync": synced,
        "agent_process": process,
        "memory": memory,
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="A broker (default: start one).")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--count", type=int, default=2500, help="Readings per device.")
    parser.add_argument("--batch", type=int, default=200, help="Readings per scoring batch.")
    parser.add_argument("--latency-readings", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(
        args.bootstrap, devices=args.devices, count=args.count, batch=args.batch,
        latency_readings=args.latency_readings, seed=args.seed,
    )  # fmt: skip
    print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
