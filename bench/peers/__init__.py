"""Peers in the bench (issue #12, item 5): the same job on quix-streams and bytewax.

    python -m bench --only peers [--quick]

The job (`bench.peers.job`): per device and metric a 60 s event-time mean/std and an EW z-score
(river.stats); one output per input message, as the worker. Three peers: quix-streams with its
RocksDB state (`quix-rocksdb`), with its in-memory store (`quix-memory`), and bytewax
(`bytewax`, state in memory). They are installed in their own venv, `.cache/bench-peers-venv`
(pinned versions, created on first use with pip, then reused), so their dependencies never
meet the worker's. `peers_command` drains the same deterministic backlog with C (the worker)
and each peer, interleaved per round (C, quix-rocksdb, quix-memory, bytewax), on the same
broker, through the ladder's `drain_once`; the ratios are C over each peer per round
(median), so they compare runs that saw the same machine load.

This package's modules import nothing from edgeml at module level: the peer apps run in the
peers' venv.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "REQUIREMENTS", "ensure_venv", "peers_command", "print_peers"]

PEERS = ("quix-rocksdb", "quix-memory", "bytewax")
REQUIREMENTS = ("quixstreams==3.28.1", "bytewax==0.21.1", "river==0.26.1", "orjson>=3.9,<4")
_ROOT = Path(__file__).resolve().parents[2]
VENV = _ROOT / ".cache" / "bench-peers-venv"
READY = "peer: ready"


def ensure_venv(venv: Path = VENV) -> Path:
    """The peers' python, installing `REQUIREMENTS` into `venv` unless already done (a stamp
    file named after the requirements' hash records it)."""
    stamp = venv / f".installed-{hashlib.sha256(' '.join(REQUIREMENTS).encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if stamp.exists() and python.exists():
        return python
    from bench.common import emit

    emit(f"peers: installing {', '.join(REQUIREMENTS)} into {venv}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    stamp.write_text("\n".join(REQUIREMENTS) + "\n")
    return python


def output_topic(prefix: str) -> str:
    return f"{prefix}peer-out"


def _command(python: Path, peer: str, env: Any, prefix: str, app_id: str) -> list[str]:
    from bench.systems import input_topic

    common = [
        "--bootstrap", env.bootstrap, "--input", input_topic(prefix),
        "--output", output_topic(prefix), "--group", app_id, "--linger-ms", str(env.linger_ms),
    ]  # fmt: skip
    if peer == "bytewax":
        return [str(python), "-m", "bench.peers.bytewax_app", *common]
    state = "memory" if peer == "quix-memory" else "rocksdb"
    state_dir = env.run_dir / f"{app_id}-state"
    return [
        str(python), "-m", "bench.peers.quix_app", *common,
        "--state", state, "--state-dir", str(state_dir),
    ]  # fmt: skip


def start_peer(python: Path, peer: str, env: Any, prefix: str, app_id: str) -> Any:
    """Start one peer process on `<prefix>sensor-readings`; wait for its ready line."""
    from bench.systems import Running, StartFailed

    running = Running("C", app_id)  # `variant` is only a label for Running's users here
    log = env.run_dir / f"{app_id}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _command(python, peer, env, prefix, app_id),
            cwd=_ROOT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")},
                "PYTHONPATH": str(_ROOT),
                "PYTHONUNBUFFERED": "1",
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running.procs.append(proc)
    running.logs.append(log)
    deadline = time.monotonic() + 60.0
    while READY not in log.read_text(errors="replace"):
        if not running.alive() or time.monotonic() > deadline:
            tail = running.log_tail()
            running.stop()
            raise StartFailed(f"peer {peer} did not start:\n{tail}")
        time.sleep(0.1)
    return running


def peers_command(
    env: Any,
    *,
    kinds: Sequence[str] = ("single", "batched"),
    rounds: int | None = None,
    readings: int | None = None,
    devices: int = 200,
) -> dict[str, Any]:
    """Interleaved drain rounds of C and every peer per message kind (module docstring):
    200 devices x 500 readings by default, as in the issue."""
    from bench.checker import Probe
    from bench.common import cleanup, create_topics, emit
    from bench.ladder import KINDS, drain_once, produce
    from bench.load import LoadSpec
    from bench.systems import input_topic
    from bench.systems import output_topic as system_output

    python = ensure_venv()
    rounds = rounds or (1 if env.quick else 2)
    per_device = (readings or (60_000 if env.quick else 100_000)) // devices
    out: dict[str, Any] = {"devices": devices, "readings_per_device": per_device, "kinds": {}}
    probe = Probe(env.bootstrap)
    try:
        for kind in kinds:
            batch = KINDS[kind]
            count = max(per_device, batch)
            emit(f"peers/{kind}: {devices * count:,} readings per run, {batch} per message")
            runs: list[dict[str, Any]] = []
            for r in range(rounds):
                for system in ("C", *PEERS):
                    tag = system.replace("-", "")[:6]
                    prefix = env.prefix(f"peers-{kind}-{tag}{r + 1}")
                    app_id = f"{prefix}app"
                    target = system_output("C", prefix) if system == "C" else output_topic(prefix)
                    try:
                        create_topics(env, [input_topic(prefix), target])
                        spec = LoadSpec(input_topic(prefix), devices=devices, count=count,
                                        batch=batch)  # fmt: skip
                        produced = produce(env, spec)
                        starter = None
                        if system != "C":

                            def starter(s: str = system, p: str = prefix, a: str = app_id) -> Any:
                                return start_peer(python, s, env, p, a)

                        result = drain_once(
                            env, probe, "C", prefix, app_id,
                            messages=produced["messages"], readings=produced["readings"],
                            max_s=8.0 if env.quick else None, starter=starter, output=target,
                        )  # fmt: skip
                    finally:
                        cleanup(env, prefix)
                    result.update(system=system, round=r + 1)
                    runs.append(result)
                    emit(
                        f"  round {r + 1} {system:<12}: {result['rate']:>10,.0f} readings/s  "
                        f"cpu {result['cpu_us_per_reading']:7.1f} µs/reading  "
                        f"lost {result['lost']} dup {result['duplicates']}"
                        f"{'' if result['complete'] else ' (cut short: quick)'}"
                    )
            out["kinds"][kind] = _summarize(runs)
    finally:
        probe.close()
    single, batched = out["kinds"].get("single"), out["kinds"].get("batched")
    # the targets: batched C vs bytewax and quix in memory, single C vs quix RocksDB
    out["peer_bytewax_ratio"] = batched["ratio"]["bytewax"] if batched else None
    out["peer_quix_mem_ratio"] = batched["ratio"]["quix-memory"] if batched else None
    out["peer_quix_rocksdb_ratio"] = single["ratio"]["quix-rocksdb"] if single else None
    return out


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    systems = ("C", *PEERS)
    rate = {s: [r["rate"] for r in runs if r["system"] == s] for s in systems}
    cpu = {s: [r["cpu_us_per_reading"] for r in runs if r["system"] == s] for s in systems}
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["system"]] = run["rate"]

    def ratio(peer: str) -> float:
        values = [x["C"] / x[peer] for x in by_round.values() if x.get(peer) and "C" in x]
        return round(statistics.median(values), 3) if values else float("nan")

    return {
        "rate": {s: round(statistics.median(v), 1) if v else 0.0 for s, v in rate.items()},
        "cpu_us_per_reading": {
            s: round(statistics.median(v), 2) if v else 0.0 for s, v in cpu.items()
        },
        "ratio": {p: ratio(p) for p in PEERS},  # C / peer, median over rounds
        "lost": sum(r["lost"] for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        "runs": runs,
    }


def print_peers(result: dict[str, Any]) -> None:
    from bench.common import emit

    for kind, data in result["kinds"].items():
        emit(f"peers/{kind} ({result['devices']} devices), drain rate, median of rounds:")
        for system, rate in data["rate"].items():
            ratio = "" if system == "C" else f"   C/{system} {data['ratio'][system]:.2f}"
            emit(
                f"  {system:<12} {rate:>10,.0f} readings/s   "
                f"CPU {data['cpu_us_per_reading'][system]:7.1f} µs/reading{ratio}"
            )
