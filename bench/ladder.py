"""Ceiling ladder: A (raw aiokafka) vs B (Faust no-op) vs C (full pipeline), interleaved.

    python -m bench.ladder [--quick] [--kind single|batched|both] [--rounds 2] [--lag]

**Drain rate** (the primary figure): a backlog is produced first (a separate generator
process, as fast as it can; the same deterministic content for every run), then one system
starts on it and drains it, in the order A B C A B C, each under its own topic prefix and app
id; throughput = readings/s between 10 % and 95 % of the outputs, from the output records'
timestamps (set by the system's producer). The system's CPU seconds per reading are recorded
beside it (on a shared VM they move with the load too, but less than rates do).

**Flat-lag ceiling** (`--lag`): a system runs while the generator offers fixed rates in steps
(fractions of its drain rate); the highest rate where consumer lag stays flat is reported.

Run twice: single-reading messages (readings/s = messages/s) and batched messages of 100.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
from bench.load import LoadSpec
from bench.systems import VARIANTS, Running, Variant, input_topic, output_topic, start

__all__ = ["KINDS", "drain_once", "flat_ceiling", "main", "produce", "run_ladder", "run_load"]

KINDS = {"single": 1, "batched": 100}


def run_load(
    env: BenchEnv, spec: LoadSpec, *, wait: bool = True
) -> dict[str, Any] | subprocess.Popen[bytes]:
    """Run the generator process; with `wait`, return its result (else the process)."""
    result = env.run_dir / f"load-{time.monotonic_ns()}.json"
    # Paced runs play devices, which send each reading when it is due (no linger); a backlog is
    # produced in batches like any bulk producer.
    linger = 0 if spec.rate > 0 else env.linger_ms
    command = [
        sys.executable, "-m", "bench.load", "--bootstrap", env.bootstrap,
        "--linger-ms", str(linger), "--result", str(result), *spec.args(),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.result_path = result  # type: ignore[attr-defined]
    if not wait:
        return proc
    return load_result(proc)


def produce(env: BenchEnv, spec: LoadSpec) -> dict[str, Any]:
    """Run the generator process to the end; its result."""
    proc = run_load(env, spec, wait=False)
    assert isinstance(proc, subprocess.Popen)
    return load_result(proc)


def load_result(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    import json

    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.decode()[-2000:]}")
    return dict(json.loads(proc.result_path.read_text()))  # type: ignore[attr-defined]


def _wait_outputs(
    probe: Probe,
    topic: str,
    start: dict[Any, int],
    expected: int,
    *,
    stall_s: float,
    alive: Any = None,
    max_s: float | None = None,
) -> int:
    """Poll end offsets until `expected` new messages are on `topic` (or progress stalls, or
    `max_s` passed since the first output)."""
    base = probe.total(start)
    last, last_change = -1, time.monotonic()
    first: float | None = None
    while True:
        done = probe.total(probe.end(topic)) - base
        if done >= expected:
            return done
        now = time.monotonic()
        if done > 0 and first is None:
            first = now
        if max_s is not None and first is not None and now - first > max_s:
            return done
        if done != last:
            last, last_change = done, now
        elif now - last_change > stall_s:
            return done
        if alive is not None and not alive():
            return done
        time.sleep(0.25)


def drain_once(
    env: BenchEnv,
    probe: Probe,
    variant: Variant,
    prefix: str,
    app_id: str,
    *,
    messages: int,
    readings: int,
    stall_s: float = 60.0,
    max_s: float | None = None,
    starter: Callable[[], Running] | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """Start `variant` on a pre-filled backlog, wait until it wrote one output per message
    (or, with `max_s`, until it has been writing outputs for that long: quick runs).
    `starter` and `output` run another system instead (the peers, `bench.peers`)."""
    out = output or output_topic(variant, prefix)
    begin = probe.end(out)
    t0 = time.monotonic()
    running = starter() if starter else start(variant, env, prefix, app_id=app_id)
    ready_s = time.monotonic() - t0
    cpu0 = sum(cpu_seconds(pid) for pid in running.pids)
    done = _wait_outputs(
        probe, out, begin, messages, stall_s=stall_s, alive=running.alive, max_s=max_s
    )
    cpu = sum(cpu_seconds(pid) for pid in running.pids) - cpu0
    died = not running.alive()
    running.stop()
    records = probe.read(out, begin)
    items: list[dict[str, Any]] = []
    stamps: list[tuple[int, int]] = []
    for record in records:
        found = readings_in(record.value)
        items.extend(found)
        stamps.append((record.timestamp, len(found)))
    complete = done >= messages
    # A run cut short by `max_s` is checked for duplicates only: the rest was never due.
    counts = tally(
        items, readings if complete else len({(i["device_id"], i["seq"]) for i in items})
    )
    rate = drain_rate(stamps)
    return {
        "variant": variant,
        "app_id": app_id,
        "ready_s": round(ready_s, 2),
        "outputs": done,
        "complete": complete,
        "rate": rate["rate"],
        "window_s": rate["window_s"],
        "cpu_us_per_reading": round(cpu / max(counts.unique, 1) * 1e6, 2),
        **counts.as_dict(),
        "died": died,
    }


def run_ladder(
    env: BenchEnv,
    kind: str,
    *,
    rounds: int,
    readings: int,
    devices: int = 1000,
    probe: Probe | None = None,
    max_s: float | None = None,
) -> dict[str, Any]:
    """Drain-rate ladder for one message kind: A B C per round, each on its own copy of the
    same backlog (the simulation is deterministic), under its own topic prefix that is deleted
    right after the run. Sharing topics between runs is not neutral: a later pipeline run
    would re-read the earlier runs' repartition topic, and the broker would keep compacting
    their changelogs while the next system is measured."""
    batch = KINDS[kind]
    count = max(readings // devices, batch)
    own_probe = probe is None
    probe = probe or Probe(env.bootstrap)
    runs: list[dict[str, Any]] = []
    load: dict[str, Any] = {}
    emit(f"ladder/{kind}: {devices * count:,} readings per run, {batch} per message")
    try:
        for r in range(rounds):
            for variant in VARIANTS:
                prefix = env.prefix(f"ladder-{kind}-{variant.lower()}{r + 1}")
                try:
                    create_topics(env, [input_topic(prefix), output_topic(variant, prefix)])
                    spec = LoadSpec(input_topic(prefix), devices=devices, count=count, batch=batch)
                    produced = produce(env, spec)
                    load = load or produced
                    result = drain_once(
                        env,
                        probe,
                        variant,
                        prefix,
                        f"{prefix}app",
                        messages=produced["messages"],
                        readings=produced["readings"],
                        max_s=max_s,
                    )
                finally:
                    cleanup(env, prefix)
                result["round"] = r + 1
                runs.append(result)
                emit(
                    f"  round {r + 1} {variant}: {result['rate']:>10,.0f} readings/s  "
                    f"cpu {result['cpu_us_per_reading']:7.1f} µs/reading  "
                    f"lost {result['lost']} dup {result['duplicates']}"
                    f"{'' if result['complete'] else ' (cut short: quick)'}  "
                    f"(window {result['window_s']:.1f} s, ready in {result['ready_s']:.1f} s)"
                )
    finally:
        if own_probe:
            probe.close()
    return summarize(kind, load, runs)


def summarize(kind: str, load: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rounds: dict[int, dict[str, float]] = {}
    for run in runs:
        by[run["variant"]].append(run["rate"])
        cpu[run["variant"]].append(run["cpu_us_per_reading"])
        rounds.setdefault(run["round"], {})[run["variant"]] = run["rate"]

    def ratio(x: str, y: str) -> float:
        values = [r[x] / r[y] for r in rounds.values() if r.get(y) and x in r]
        return round(statistics.median(values), 3) if values else float("nan")

    median = {v: round(statistics.median(by[v]), 1) if by[v] else 0.0 for v in VARIANTS}
    return {
        "kind": kind,
        "batch": KINDS[kind],
        "readings": load["readings"],
        "messages": load["messages"],
        "payload_bytes_mean": load["payload_bytes_mean"],
        "devices": load["devices"],
        "rate": median,
        "cpu_us_per_reading": {
            v: round(statistics.median(cpu[v]), 2) if cpu[v] else 0.0 for v in VARIANTS
        },
        "ratio_c_over_a": ratio("C", "A"),
        "ratio_b_over_a": ratio("B", "A"),
        "ratio_c_over_b": ratio("C", "B"),
        "lost": sum(r["lost"] for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        "runs": runs,
    }


def flat_ceiling(
    env: BenchEnv,
    variant: Variant,
    kind: str,
    guess: float,
    *,
    fractions: Sequence[float] = (0.6, 0.8, 0.9, 1.0, 1.1, 1.25),
    lower: Sequence[float] = (0.4, 0.25),
    step_s: float = 6.0,
    devices: int = 1000,
    probe: Probe,
) -> dict[str, Any]:
    """Offer fixed rates (fractions of `guess`, readings/s) until lag stops being flat; when
    even the first is not flat (paced traffic makes smaller batches than a backlog does), try
    the `lower` fractions in turn until one is."""
    batch = KINDS[kind]
    prefix = env.prefix(f"lag-{kind}-{variant.lower()}")
    topics = [input_topic(prefix), output_topic(variant, prefix)]
    create_topics(env, topics)
    running = start(variant, env, prefix, app_id=f"{prefix}app")
    steps: list[dict[str, Any]] = []
    try:
        event_ts = time.time() - 10 * 24 * 3600  # steps continue each other's event time
        plan = list(fractions)
        while plan:
            fraction = plan.pop(0)
            rate = guess * fraction
            count = max(int(rate * step_s / devices), batch)
            spec = LoadSpec(
                input_topic(prefix),
                devices=devices,
                count=count,
                batch=batch,
                rate=rate,
                start_ts=event_ts,
            )
            event_ts += count * spec.interval
            in0 = probe.total(probe.end(topics[0]))
            out0 = probe.total(probe.end(topics[1]))
            proc = run_load(env, spec, wait=False)
            assert isinstance(proc, subprocess.Popen)
            samples: list[tuple[float, int]] = []
            t0 = time.monotonic()
            while proc.poll() is None:
                lag = (probe.total(probe.end(topics[0])) - in0) - (
                    probe.total(probe.end(topics[1])) - out0
                )
                samples.append((time.monotonic() - t0, lag))
                time.sleep(0.25)
            load = load_result(proc)
            slope = _slope(samples[len(samples) // 3 :]) * batch  # readings/s of growing lag
            final_lag = samples[-1][1] * batch if samples else 0
            generator_ok = load["achieved_rate"] >= 0.95 * rate
            flat = slope < 0.03 * rate and final_lag < max(rate * 0.5, 2 * batch)
            steps.append(
                {
                    "offered": round(rate, 1),
                    "achieved": load["achieved_rate"],
                    "lag_slope": round(slope, 1),
                    "final_lag_readings": final_lag,
                    "flat": flat,
                    "generator_ok": generator_ok,
                }
            )
            emit(
                f"  lag {kind} {variant}: offered {rate:>9,.0f}/s "
                f"(sent {load['achieved_rate']:,.0f}/s) lag slope {slope:>8,.0f}/s "
                f"final lag {final_lag:>7,} "
                f"{'flat' if flat else 'GROWING'}{'' if generator_ok else ' (generator-limited)'}"
            )
            _wait_outputs(probe, topics[1], {}, probe.total(probe.end(topics[0])), stall_s=10.0)
            if not generator_ok:
                break
            if not flat:
                if any(s["flat"] for s in steps):
                    break
                plan = [f for f in lower if f < fraction][:1]
    finally:
        running.stop()
        cleanup(env, prefix)
    flat_rates = [s["achieved"] for s in steps if s["flat"]]
    return {
        "variant": variant,
        "kind": kind,
        "ceiling": max(flat_rates) if flat_rates else 0.0,
        "generator_limited": bool(steps) and not steps[-1]["generator_ok"],
        "steps": steps,
    }


def _slope(samples: Sequence[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return sum((t - mx) * (v - my) for t, v in samples) / den if den else 0.0


def print_summary(result: dict[str, Any]) -> None:
    rate = result["rate"]
    cpu = result["cpu_us_per_reading"]
    emit(
        f"ladder/{result['kind']} ({result['batch']} reading(s)/message, "
        f"{result['payload_bytes_mean']:.0f} B/message, {result['devices']} devices, "
        f"{result['readings']:,} readings), drain rate, median of rounds:"
    )
    for v in VARIANTS:
        emit(f"  {v}: {rate[v]:>10,.0f} readings/s   worker CPU {cpu[v]:7.1f} µs/reading")
    emit(
        f"  C/A {result['ratio_c_over_a']:.3f}   B/A {result['ratio_b_over_a']:.3f}   "
        f"C/B {result['ratio_c_over_b']:.3f}   lost {result['lost']}  dup {result['duplicates']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--kind", choices=["single", "batched", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=None, help="A B C rounds (2; quick: 1).")
    parser.add_argument("--readings", type=int, default=None, help="Backlog size in readings.")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--lag", action="store_true", help="Also find the flat-lag ceiling.")
    args = parser.parse_args(argv)
    env = env_from_args(args)
    result = ladder_command(
        env,
        kinds=["single", "batched"] if args.kind == "both" else [args.kind],
        rounds=args.rounds,
        readings=args.readings,
        devices=args.devices,
        lag=args.lag,
    )
    print_json(result)
    return 0


def default_readings(env: BenchEnv, kind: str) -> int:
    if kind == "single":
        return 30_000 if env.quick else 100_000
    return 200_000 if env.quick else 300_000


def ladder_command(
    env: BenchEnv,
    *,
    kinds: Sequence[str],
    rounds: int | None = None,
    readings: int | None = None,
    devices: int = 1000,
    lag: bool = False,
) -> dict[str, Any]:
    rounds = rounds or (1 if env.quick else 2)
    out: dict[str, Any] = {"env": env.describe(), "versions": versions()}
    probe = Probe(env.bootstrap)
    try:
        for kind in kinds:
            n = readings or default_readings(env, kind)
            result = run_ladder(
                env,
                kind,
                rounds=rounds,
                readings=n,
                devices=min(devices, n),
                probe=probe,
                max_s=6.0 if env.quick else None,
            )
            print_summary(result)
            if lag:
                result["flat_lag"] = {
                    v: flat_ceiling(
                        env, v, kind, result["rate"][v], probe=probe, devices=min(devices, n)
                    )
                    for v in VARIANTS
                }
                emit(
                    "  flat-lag ceiling: "
                    + "  ".join(
                        f"{v} {r['ceiling']:,.0f}/s"
                        + (" (generator-limited)" if r["generator_limited"] else "")
                        for v, r in result["flat_lag"].items()
                    )
                )
            out[kind] = result
    finally:
        probe.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
