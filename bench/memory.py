"""Memory: the worker's RSS over many readings from many devices, and state bytes per device.

    python -m bench.memory [--quick] [--readings 1000000] [--devices 1000] [--batch 100]

One pipeline worker (C) runs while the generator (its own process) sends `--readings` readings
from `--devices` devices as fast as it can; this process samples the worker's RSS
(`/proc/<pid>/status`) and its progress (prediction offsets) every half second.

Growth = RSS at the end against RSS at the end of the warm-up. The worker keeps bounded
per-device history in *event time*: feature windows (60 s), failure-label rows (10 min) and the
analytics panes (`analytics_retention_s`, 1 h by default), so memory may only be flat once every
device has more event time behind it than the longest of those. Readings are therefore spaced
`--interval` seconds of event time apart (10 s by default: 1,000 readings per device = 2.8 h),
and the warm-up lasts until that horizon has passed (at least 20 % of the readings). The RSS at
20 % of the readings is reported beside it. Target: <= 10 % growth after warm-up.

State bytes per device: the latest value per device in the worker's changelog topic, decoded to
the `DeviceState.to_bytes()` bytes (and the size of the changelog record itself, beside it).
Process-wide model state (the ONNX failure model, the river online model) is reported apart:
it does not grow with devices.
"""

from __future__ import annotations

import argparse
import ast
import pickle
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bench.checker import Probe
from bench.common import (
    BenchEnv,
    add_options,
    cleanup,
    create_topics,
    emit,
    env_from_args,
    print_json,
    rss_bytes,
    versions,
)
from bench.ladder import load_result, run_load
from bench.load import LoadSpec
from bench.systems import changelog_topic, input_topic, output_topic, start
from edgeml.models.state import STATE_MAGICS

__all__ = ["main", "memory_command", "model_state_bytes", "state_sizes"]

MB = 1024 * 1024


def state_sizes(values: Sequence[bytes]) -> dict[str, float]:
    """Sizes of changelog values as written, and of the `DeviceState` bytes inside them."""
    raw_sizes = [len(v) for v in values]
    state = [len(_state_bytes(v)) for v in values]
    if not values:
        return {"devices": 0}
    return {
        "devices": len(values),
        "state_bytes_mean": round(sum(state) / len(state), 1),
        "state_bytes_max": max(state),
        "changelog_bytes_mean": round(sum(raw_sizes) / len(raw_sizes), 1),
    }


def _state_bytes(value: bytes) -> bytes:
    """A changelog value is the raw state, or (Faust's json codec on bytes) a JSON string
    holding `repr(bytes)`; both give back the `DeviceState.to_bytes()` bytes."""
    if value.startswith(STATE_MAGICS):
        return value
    text = orjson.loads(value)
    if isinstance(text, str) and text.startswith(("b'", 'b"')):
        return bytes(ast.literal_eval(text))
    return value


def model_state_bytes() -> dict[str, int]:
    """Process-wide model state: the failure model file and the pickled online model."""
    from edgeml.models.registry import load_promoted
    from edgeml.models.scoring import Scorer
    from edgeml.models.shipped import SHIPPED_ROOT

    scorer = Scorer(failure_model=load_promoted(SHIPPED_ROOT))
    sizes = {"online_model_pickle_bytes": len(pickle.dumps(scorer.online))}
    handle = scorer.failure_model
    memory = getattr(getattr(handle, "current", None), "memory", None)
    if memory is not None:
        sizes["failure_model_file_bytes"] = int(memory.file_bytes)
    return sizes


def _retention_s(env: BenchEnv) -> float:
    from edgeml.app.settings import Settings

    overrides = {k.removeprefix("EDGEML_").lower(): v for k, v in env.worker_env}
    value = overrides.get("analytics_retention_s")
    return float(value) if value is not None else float(Settings().analytics_retention_s)


def memory_command(
    env: BenchEnv,
    *,
    readings: int | None = None,
    devices: int = 1000,
    batch: int = 100,
    interval: float = 10.0,
) -> dict[str, Any]:
    readings = readings or (100_000 if env.quick else 1_000_000)
    devices = min(devices, readings)
    count = max(readings // devices, 1)
    batch = min(batch, count)
    prefix = env.prefix("memory")
    app_id = f"{prefix}app"
    out = output_topic("C", prefix)
    create_topics(env, [input_topic(prefix), out])
    spec = LoadSpec(
        input_topic(prefix), devices=devices, count=count, batch=batch, interval=interval
    )
    horizon = max(_retention_s(env), 600.0) + 120.0  # analytics panes / label rows, + slack
    warm_fraction = max(0.2, min(horizon / (count * interval), 0.9))
    emit(
        f"memory: {spec.readings:,} readings from {devices:,} devices, {batch} per message, "
        f"{interval:g} s of event time apart ({count * interval / 3600:.1f} h per device), one "
        f"worker; warm-up: the first {warm_fraction:.0%} ({horizon:,.0f} s of event time)"
    )
    probe = Probe(env.bootstrap)
    running = start("C", env, prefix, app_id=app_id)
    pid = running.pids[0]
    samples: list[tuple[float, int, int]] = []  # (seconds, readings processed, rss)
    try:
        begin = probe.total(probe.end(out))
        t0 = time.monotonic()
        proc = run_load(env, spec, wait=False)
        expected = spec.devices * -(-count // batch)
        last_change, last_done = time.monotonic(), -1
        while True:
            done = probe.total(probe.end(out)) - begin
            samples.append(
                (time.monotonic() - t0, min(done * batch, spec.readings), rss_bytes(pid))
            )
            if done >= expected or not running.alive():
                break
            if done != last_done:
                last_change, last_done = time.monotonic(), done
            elif time.monotonic() - last_change > 60:
                break
            time.sleep(0.5)
        load = load_result(proc)  # type: ignore[arg-type]
        alive = running.alive()
        sizes = state_sizes(_latest_values(probe, changelog_topic(app_id)))
    finally:
        running.stop()
        probe.close()
        cleanup(env, prefix)
        cleanup(env, app_id)
    warm = next((s for s in samples if s[1] >= warm_fraction * spec.readings), samples[-1])
    at20 = next((s for s in samples if s[1] >= 0.2 * spec.readings), samples[-1])
    end = samples[-1]
    after = [s for s in samples if s[1] >= warm[1]]
    growth = (end[2] - warm[2]) / warm[2] * 100.0 if warm[2] else float("nan")
    elapsed = end[0] - samples[0][0]
    result = {
        "env": env.describe(),
        "versions": versions(),
        "readings": spec.readings,
        "processed": end[1],
        "devices": devices,
        "batch": batch,
        "payload_bytes_mean": load["payload_bytes_mean"],
        "rss_start_mb": round(samples[0][2] / MB, 1),
        "interval_s": interval,
        "warmup_fraction": round(warm_fraction, 3),
        "rss_at_20pct_mb": round(at20[2] / MB, 1),
        "rss_growth_from_20pct_pct": round((end[2] - at20[2]) / at20[2] * 100.0, 2)
        if at20[2]
        else float("nan"),
        "rss_after_warmup_mb": round(warm[2] / MB, 1),
        "rss_end_mb": round(end[2] / MB, 1),
        "rss_max_after_warmup_mb": round(max(s[2] for s in after) / MB, 1),
        "rss_growth_pct": round(growth, 2),
        "elapsed_s": round(elapsed, 1),
        "readings_per_s": round(end[1] / elapsed, 1) if elapsed > 0 else 0.0,
        "state": sizes,
        "state_bytes_per_device": sizes.get("state_bytes_mean", float("nan")),
        "model_state": model_state_bytes(),
        "worker_alive": alive,
        "samples": [
            (round(t, 1), n, round(r / MB, 1)) for t, n, r in samples[:: max(len(samples) // 40, 1)]
        ],
    }
    emit(
        f"  RSS {result['rss_start_mb']} MB at start, {result['rss_at_20pct_mb']} MB at 20 %, "
        f"{result['rss_after_warmup_mb']} MB after warm-up ({warm_fraction:.0%}), "
        f"{result['rss_end_mb']} MB at the end (max {result['rss_max_after_warmup_mb']} MB): "
        f"growth after warm-up {result['rss_growth_pct']:+.1f} % "
        f"(from 20 %: {result['rss_growth_from_20pct_pct']:+.1f} %)"
    )
    emit(
        f"  {result['processed']:,} readings in {result['elapsed_s']} s "
        f"({result['readings_per_s']:,.0f}/s); state per device: "
        f"{sizes.get('state_bytes_mean', 0):,.0f} B mean, {sizes.get('state_bytes_max', 0):,} B "
        f"max ({sizes.get('changelog_bytes_mean', 0):,.0f} B per changelog record); model state "
        f"(process-wide): {result['model_state']}"
    )
    return result


def _latest_values(probe: Probe, topic: str) -> list[bytes]:
    latest: dict[bytes, bytes] = {}
    try:
        records = probe.read(topic, {})
    except RuntimeError:
        return []
    for record in records:
        if record.value is not None:
            latest[record.key] = record.value
    return list(latest.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--readings", type=int, default=None, help="1,000,000 (quick: 100,000).")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100, help="Readings per message.")
    parser.add_argument("--interval", type=float, default=10.0, help="Event-time s between.")
    args = parser.parse_args(argv)
    env = env_from_args(args)
    result = memory_command(
        env, readings=args.readings, devices=args.devices, batch=args.batch, interval=args.interval
    )
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
