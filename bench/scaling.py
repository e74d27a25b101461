"""Scaling: drain rate of 1, 2 and 3 pipeline workers (C) in one consumer group.

    python -m bench.scaling [--quick] [--workers 1,2,3] [--kind single|batched]

The workers start first and the group settles (every worker ready and the group `Stable` with
all members); then the generator produces a backlog as fast as it can, and the drain rate is
measured from the output timestamps written after the generator finished (so start-up and
rebalances are not in the window). On a 2-core machine that also runs the broker, the generator
and the checker, more workers mostly measure the overhead of more processes: say so when
quoting it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.checker import Probe, drain_rate, readings_in, tally
from bench.common import (
    BenchEnv,
    add_options,
    cleanup,
    cpu_seconds,
    create_topics,
    emit,
    env_from_args,
    print_json,
    versions,
)
from bench.ladder import KINDS, _wait_outputs, produce
from bench.load import LoadSpec
from bench.systems import input_topic, output_topic, start

__all__ = ["main", "scale_once", "scaling_command"]


def _wait_stable(env: BenchEnv, group: str, members: int, timeout_s: float = 90.0) -> float:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap, client_id="edgeml-bench")
    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout_s:
            info = admin.describe_groups([group]).get(group, {})
            if info.get("group_state") == "Stable" and len(info.get("members", ())) == members:
                return time.monotonic() - began
            time.sleep(0.5)
    finally:
        admin.close()
    raise RuntimeError(f"group {group} not stable with {members} members in {timeout_s:.0f} s")


def scale_once(
    env: BenchEnv, probe: Probe, workers: int, *, kind: str, readings: int, devices: int
) -> dict[str, Any]:
    batch = KINDS[kind]
    prefix = env.prefix(f"scale-{kind}-{workers}")
    app_id = f"{prefix}app"
    out = output_topic("C", prefix)
    create_topics(env, [input_topic(prefix), out])
    spec = LoadSpec(input_topic(prefix), devices=devices, count=max(readings // devices, batch),
                    batch=batch)  # fmt: skip
    running = start("C", env, prefix, app_id=app_id, workers=workers, timeout_s=180.0)
    try:
        settle_s = _wait_stable(env, app_id, workers)
        time.sleep(2.0)
        begin = probe.end(out)
        cpu0 = sum(cpu_seconds(pid) for pid in running.pids)
        load = produce(env, spec)
        _wait_outputs(probe, out, begin, load["messages"], stall_s=60.0, alive=running.alive)
        cpu = sum(cpu_seconds(pid) for pid in running.pids) - cpu0
        alive = running.alive()
    finally:
        running.stop()
    records = probe.read(out, begin)
    cleanup(env, prefix)
    items: list[dict[str, Any]] = []
    stamps: list[tuple[int, int]] = []
    for record in records:
        found = readings_in(record.value)
        items.extend(found)
        stamps.append((record.timestamp, len(found)))
    after = [s for s in stamps if s[0] >= load["finished_at"] * 1000.0]
    counts = tally(items, load["readings"])
    whole = drain_rate(stamps)
    tail = drain_rate(after, low=0.0) if len(after) > 10 else {"rate": 0.0, "window_s": 0.0}
    return {
        "workers": workers,
        "settle_s": round(settle_s, 1),
        "generator_rate": load["achieved_rate"],
        "rate_after_generator": tail["rate"],
        "window_after_generator_s": tail["window_s"],
        "rate_overall": whole["rate"],
        "cpu_us_per_reading": round(cpu / max(counts.unique, 1) * 1e6, 1),
        **counts.as_dict(),
        "all_alive": alive,
    }


def scaling_command(
    env: BenchEnv,
    *,
    workers: Sequence[int] = (1, 2, 3),
    kind: str = "single",
    readings: int | None = None,
    devices: int = 1000,
) -> dict[str, Any]:
    if not readings:
        readings = (10_000 if env.quick else 40_000) * (10 if kind == "batched" else 1)
    emit(
        f"scaling: {', '.join(map(str, workers))} pipeline workers, {kind} messages, "
        f"{readings:,} readings, {env.partitions} partitions, nproc={_nproc()} "
        "(with 2 cores this mostly measures the overhead of more processes)"
    )
    probe = Probe(env.bootstrap)
    rows = []
    try:
        for n in workers:
            row = scale_once(env, probe, n, kind=kind, readings=readings, devices=devices)
            rows.append(row)
            emit(
                f"  {n} worker(s): {row['rate_after_generator']:>9,.0f} readings/s after the "
                f"generator finished ({row['rate_overall']:,.0f}/s overall), worker CPU "
                f"{row['cpu_us_per_reading']:.0f} µs/reading, lost {row['lost']} "
                f"dup {row['duplicates']}"
            )
    finally:
        probe.close()
    return {"env": env.describe(), "versions": versions(), "kind": kind, "workers": rows}


def _nproc() -> int:
    import os

    return os.cpu_count() or 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--workers", default="1,2,3", help="Worker counts, comma list.")
    parser.add_argument("--kind", choices=sorted(KINDS), default="single")
    parser.add_argument("--readings", type=int, default=None)
    args = parser.parse_args(argv)
    env = env_from_args(args)
    result = scaling_command(
        env,
        workers=[int(w) for w in args.workers.split(",")],
        kind=args.kind,
        readings=args.readings,
    )
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
