"""Decode and encode per reading, before and after the typed path (issue #12, item 2).

    python -m bench.decode [--quick] [--repeats N]

In-process CPU time (best of repeats) per reading, single-reading messages and 100-reading
envelopes of simulated readings:

- *parse*: `parse_message_reference` (orjson to dicts, every field checked in Python: the
  path before) against `parse_message` (msgspec structs typed and bounded by the limits, the
  reference only for what that does not accept);
- *encode*: each scored reading as a `Prediction` record, `to_wire()`, then orjson per message
  (before) against `prediction_wire` building the wire dict directly (now), same bytes.

`bench.steps` adds these rows to its table (`decode_rows`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bench.common import best_cpu_us

__all__ = ["decode_rows", "main"]

BATCH = 100


def decode_rows(
    raw_single: Sequence[bytes], raw_batched: Sequence[bytes], now: float, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Rows `{name: {"single": µs, "batched": µs}}` for the given messages (each reading of
    `raw_single` once, in `raw_batched` too)."""
    from edgeml.models.pipeline import prediction_wire
    from edgeml.models.scored import ScoredReading
    from edgeml.models.validation import ValidationLimits, parse_message, parse_message_reference
    from edgeml.topics.records import Prediction

    limits = ValidationLimits()

    def parse(fn: Callable[..., Any], messages: Sequence[bytes]) -> Callable[[], int]:
        return lambda: sum(len(fn(m, now, limits).readings) for m in messages)

    rows: dict[str, dict[str, float]] = {}
    for name, fn in (
        ("parse: reference path (orjson + Python checks; before)", parse_message_reference),
        ("parse: parse_message (typed msgspec path; now)", parse_message),
    ):
        rows[name] = {
            "single": best_cpu_us(parse(fn, raw_single), repeats),
            "batched": best_cpu_us(parse(fn, raw_batched), repeats),
        }
    model_ids = {"anomaly": "ewz@1", "failure": "failure-gbm@2"}

    def outcomes(messages: Sequence[bytes]) -> list[list[ScoredReading]]:
        return [
            [
                ScoredReading(r, 0.12345, 0.0125, False, False, [], 0.5)
                for r in parse_message(m, now, limits).readings
            ]
            for m in messages
        ]

    def before(o: ScoredReading) -> dict[str, Any]:
        r = o.reading
        return Prediction(
            device_id=r.device_id, ts=r.ts, seq=r.seq, anomaly_score=o.anomaly_score,
            failure_prob=o.failure_prob, models=model_ids, late=o.late,
            is_anomaly=o.is_anomaly, sent_at=r.sent_at, scored_at=now, threshold=o.threshold,
            failure_reason=o.failure_reason,
        ).to_wire()  # fmt: skip

    def now_wire(o: ScoredReading) -> dict[str, Any]:
        return prediction_wire(o, model_ids, now)

    def encode(wire: Callable[[ScoredReading], dict[str, Any]], batched: bool) -> Callable[[], int]:
        groups = outcomes(raw_batched if batched else raw_single)

        def run() -> int:
            n = 0
            for group in groups:
                predictions = [wire(o) for o in group]
                orjson.dumps({"predictions": predictions} if batched else predictions[0])
                n += len(group)
            return n

        return run

    for name, wire in (
        ("encode: Prediction record + to_wire + orjson (before)", before),
        ("encode: prediction_wire dict + orjson (now)", now_wire),
    ):
        rows[name] = {
            "single": best_cpu_us(encode(wire, False), repeats),
            "batched": best_cpu_us(encode(wire, True), repeats),
        }
    return rows


def _messages(devices: int, per_device: int) -> tuple[list[bytes], list[bytes], float]:
    from edgeml.sim.generator import SimConfig, simulate

    now = time.time()
    sim = simulate(SimConfig(devices=devices, count=per_device, seed=5, start_ts=now - 3600))
    readings = list(sim.readings())
    single = [orjson.dumps(r.to_wire()) for r in readings]
    by_device: dict[str, list[Any]] = {}
    for r in readings:
        by_device.setdefault(r.device_id, []).append(r.to_wire())
    batched = [
        orjson.dumps({"readings": items[i : i + BATCH]})
        for items in by_device.values()
        for i in range(0, len(items), BATCH)
    ]
    return single, batched, now


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 devices instead of 500.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    single, batched, now = _messages(100 if args.quick else 500, BATCH)
    rows = decode_rows(single, batched, now, args.repeats)
    print(f"decode/encode: µs per reading (CPU, best of {args.repeats}), {len(single):,} readings")
    print(f"  {'step':<62} {'single':>8} {'batched':>8}")
    for name, v in rows.items():
        print(f"  {name:<62} {v['single']:>8.2f} {v['batched']:>8.2f}")
    print(orjson.dumps({"decode": rows}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
