"""End-to-end latency at fixed offered rates: scheduled send → output visible to a consumer.

    python -m bench.latency [--quick] [--rates 500,2000,5000] [--ceiling C_RPS] [--variants A,C]

For each system (A raw passthrough and C the full pipeline by default) one process runs while
the generator (its own process) offers each rate in turn for `--step-s` seconds, single-reading
messages. The steps are consecutive slices of ONE simulated run (continuous signals, one fault
schedule), so the pipeline's state carries over as in production. Latency of a reading = the
moment the checker (this process) receives its output - its scheduled send time `sent_at`; the
first `--warmup-s` seconds of each step are dropped. For C also: latency to the `open` alert of
an injected fault (arrival - `sent_at` of the reading that opened it).

With `--ceiling` (C's drain rate from the ladder) a step at 50 % of it is added. Offered rates
above a system's ceiling show queueing that grows through the step: that is the point.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.checker import Live, Probe, readings_in, tally
from bench.common import (
    BenchEnv,
    add_options,
    cleanup,
    create_topics,
    emit,
    env_from_args,
    percentiles,
    print_json,
    versions,
)
from bench.ladder import load_result, run_load
from bench.load import LoadSpec
from bench.systems import NAMES, Variant, alerts_topic, input_topic, output_topic, start

__all__ = ["latency_command", "main", "measure_variant"]

DEVICES = 100  # at paced rates a batch holds a few messages, so this hardly changes C's cost


def _rates(fixed: Sequence[float], ceiling: float | None) -> list[float]:
    rates = list(fixed)
    if ceiling:
        rates.append(round(ceiling * 0.5, -1))
    return sorted(set(rates))


def measure_variant(
    env: BenchEnv,
    variant: Variant,
    rates: Sequence[float],
    *,
    step_s: float,
    warmup_s: float,
    probe: Probe,
    devices: int = DEVICES,
) -> dict[str, Any]:
    prefix = env.prefix(f"latency-{variant.lower()}")
    takes = [int(rate * step_s) for rate in rates]
    count = -(-sum(takes) // devices) + 1
    spec0 = LoadSpec(
        input_topic(prefix),
        devices=devices,
        count=count,
        batch=1,
        start_ts=round(time.time() - count - 120.0, 3),
        warmup=30.0,  # faults from 30 s of event time on, about one a minute per device
        incident_every=60.0,
        seed=11,
    )
    incidents = _incidents(spec0)
    outputs = [output_topic(variant, prefix)]
    if variant == "C":
        outputs.append(alerts_topic(prefix))
    create_topics(env, [input_topic(prefix), *outputs])
    running = start(variant, env, prefix, app_id=f"{prefix}app")
    steps: list[dict[str, Any]] = []
    skip = 0
    try:
        for rate, take in zip(rates, takes, strict=True):
            spec = LoadSpec(**{**spec0.__dict__, "rate": rate, "skip": skip, "take": take})
            skip += take
            steps.append(
                _step(env, probe, spec, outputs, incidents, warmup_s=warmup_s, step_s=step_s)
            )
            s = steps[-1]
            lat = s["latency_ms"]
            emit(
                f"  {variant} @ {rate:>7,.0f}/s (sent {s['achieved_rate']:>7,.0f}/s): "
                f"p50 {lat['p50']:8.1f}  p95 {lat['p95']:8.1f}  p99 {lat['p99']:8.1f}  "
                f"p99.9 {lat['p999']:8.1f}  max {lat['max']:8.1f} ms  "
                f"lost {s['lost']} dup {s['duplicates']}"
                + (
                    f"  fault alerts {s['alert_latency_ms']['n']} "
                    f"(p50 {s['alert_latency_ms']['p50']:.1f} ms)"
                    if variant == "C"
                    else ""
                )
            )
            if not running.alive():
                emit(f"  {NAMES[variant]} died:\n{running.log_tail()}")
                break
    finally:
        running.stop()
        cleanup(env, prefix)
    return {"variant": variant, "steps": steps}


def _incidents(spec: LoadSpec) -> dict[str, list[tuple[float, float]]]:
    from edgeml.sim.generator import simulate

    sim = simulate(spec.sim_config())
    found: dict[str, list[tuple[float, float]]] = {}
    for incident in sim.incidents:
        found.setdefault(incident.device_id, []).append((incident.start_ts, incident.end_ts))
    return found


def _step(
    env: BenchEnv,
    probe: Probe,
    spec: LoadSpec,
    outputs: list[str],
    incidents: dict[str, list[tuple[float, float]]],
    *,
    warmup_s: float,
    step_s: float,
) -> dict[str, Any]:
    begin: dict[Any, int] = {}
    for topic in outputs:
        begin.update(probe.end(topic))
    live = Live(env.bootstrap, begin)
    proc = run_load(env, spec, wait=False)
    assert isinstance(proc, subprocess.Popen)
    expected = spec.readings
    deadline = time.monotonic() + (15.0 if env.quick else step_s * 6 + 30)
    try:
        while proc.poll() is None:
            live.poll()
        load = load_result(proc)
        main_topic = outputs[0]
        while time.monotonic() < deadline:
            live.poll(timeout_ms=100)
            # one output message per reading (single-reading messages)
            if live.counts.get(main_topic, 0) >= expected:
                break
        live.poll(timeout_ms=300)  # alerts written with the last predictions
    finally:
        live.close()
    cutoff = load["started_at"] + warmup_s
    latencies: list[float] = []
    to_send: list[float] = []  # sent_at -> the system's send of the output (record timestamp)
    alert_latencies: list[float] = []
    items: list[dict[str, Any]] = []
    for arrival in live.arrivals:
        if arrival.topic == outputs[0]:
            for item in readings_in(arrival.value):
                items.append(item)
                sent = item.get("sent_at")
                if sent is not None and sent >= cutoff:
                    latencies.append((arrival.arrived - sent) * 1000.0)
                    to_send.append(arrival.timestamp_ms - sent * 1000.0)
        else:
            alert = readings_in(arrival.value)[0]
            opened = alert.get("state") == "open" and alert.get("sent_at") is not None
            if opened and _is_fault(alert, incidents):
                alert_latencies.append((arrival.arrived - alert["sent_at"]) * 1000.0)
    counts = tally(items, expected)
    return {
        "offered_rate": spec.rate,
        "achieved_rate": load["achieved_rate"],
        "readings": expected,
        "payload_bytes_mean": load["payload_bytes_mean"],
        "latency_ms": percentiles(latencies),
        "to_output_send_ms": percentiles(to_send),
        "alert_latency_ms": percentiles(alert_latencies),
        **counts.as_dict(),
    }


def _is_fault(alert: dict[str, Any], incidents: dict[str, list[tuple[float, float]]]) -> bool:
    ts = float(alert.get("ts", 0.0))
    return any(
        start - 5.0 <= ts <= end + 120.0 for start, end in incidents.get(alert["device_id"], ())
    )


def latency_command(
    env: BenchEnv,
    *,
    variants: Sequence[Variant] = ("A", "C"),
    rates: Sequence[float] | None = None,
    ceiling: float | None = None,
    step_s: float | None = None,
    warmup_s: float | None = None,
) -> dict[str, Any]:
    step_s = step_s or (5.0 if env.quick else 12.0)
    warmup_s = warmup_s if warmup_s is not None else (1.5 if env.quick else 3.0)
    if rates is None:
        rates = (500, 2000) if env.quick else (500, 2000, 5000)
    all_rates = _rates(rates, ceiling)
    emit(
        f"latency: single-reading messages, {DEVICES} devices, {step_s:.0f} s per rate "
        f"(first {warmup_s:.1f} s dropped), rates {', '.join(f'{r:,.0f}' for r in all_rates)}/s"
    )
    probe = Probe(env.bootstrap)
    out: dict[str, Any] = {
        "env": env.describe(),
        "versions": versions(),
        "step_s": step_s,
        "warmup_s": warmup_s,
        "devices": DEVICES,
        "variants": {},
    }
    try:
        for variant in variants:
            out["variants"][variant] = measure_variant(
                env, variant, all_rates, step_s=step_s, warmup_s=warmup_s, probe=probe
            )
    finally:
        probe.close()
    c_steps = out["variants"].get("C", {}).get("steps", [])
    at_2000 = next((s for s in c_steps if s["offered_rate"] == 2000), None)
    if at_2000 is not None:
        out["p50_ms_at_2000"] = at_2000["latency_ms"]["p50"]
        out["p99_ms_at_2000"] = at_2000["latency_ms"]["p99"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument(
        "--rates",
        default=None,
        help="Offered readings/s, comma list (500,2000,5000; quick: 500,2000).",
    )
    parser.add_argument("--ceiling", type=float, default=None, help="C's ceiling (adds 50 %%).")
    parser.add_argument("--variants", default="A,C", help="Systems to measure (A, B, C).")
    parser.add_argument(
        "--step-s", type=float, default=None, help="Seconds per rate (12; quick 5)."
    )
    parser.add_argument("--plot", default=None, help="Write the latency plot (PNG) here.")
    args = parser.parse_args(argv)
    env = env_from_args(args)
    variants = [v.strip().upper() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in ("A", "B", "C"):
            parser.error(f"--variants: {v!r} is not one of A, B, C")
    result = latency_command(
        env,
        variants=variants,
        rates=[float(r) for r in args.rates.split(",")] if args.rates else None,
        ceiling=args.ceiling,
        step_s=args.step_s,
    )
    if args.plot:
        from bench.report import plot_latency

        plot_latency(result, args.plot)
        emit(f"plot: {args.plot}")
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
