"""What the analytics and metrics observers add per reading (no broker needed).

    python -m bench.bench_observers [--batches 40] [--batch 500] [--devices 50] [--flush-every 5]

Builds a real worker (`build_worker`, memory store, producer stubbed: table changelog
writes and site partials go to a no-op), scores batches of simulator readings with the
worker's own `ReadingPipeline` (its scorer timed through the metrics hook), and times each
observer call on those batches with real Faust events, the write-back analytics tables
flushed every `--flush-every` batches, as an offset commit does in the worker (1: every
batch, the cost of writing through). Prints one JSON line: µs per reading for the pipeline
itself, for each observer, and for the flushes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import Message

from edgeml.app.factory import build_worker
from edgeml.app.settings import Settings
from edgeml.models.pipeline import Inbound
from edgeml.sim.generator import SimConfig, simulate


class _Store:
    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def load(self, device_id: str, origin: int) -> Any:
        return self.states.get(device_id)

    def save(self, device_id: str, state: Any, origin: int) -> None:
        self.states[device_id] = state


async def run(batches: int, batch: int, devices: int, flush_every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store="memory://", app_id="bench-observers", data_dir=Path(tmp),
                            bootstrap_servers="127.0.0.1:9")  # fmt: skip
        parts = build_worker(settings)
        app = parts.app
        app.finalize()
        app.producer.send_soon = lambda fut: None  # type: ignore[method-assign]
        topic = parts.topics.readings
        pipeline = parts.pipeline
        count = batches * batch // devices + 1
        config = SimConfig(devices=devices, count=count, seed=3, start_ts=time.time() - count)
        sim = simulate(config)
        readings = [e for e in sim.events() if hasattr(e, "metrics")]
        store = _Store()
        timings = {"pipeline": 0.0, "analytics": 0.0, "metrics": 0.0, "flush": 0.0}
        total = 0
        gc.disable()
        for b in range(batches):
            chunk = readings[b * batch : (b + 1) * batch]
            if not chunk:
                break
            values = [orjson.dumps(r.to_wire()) for r in chunk]
            keys = [r.device_id.encode() for r in chunk]
            partitions = [hash(k) % settings.topic_partitions for k in keys]
            rows = list(enumerate(zip(keys, values, partitions, strict=True)))
            name = topic.get_topic_name()
            inbound = [Inbound(k, v, name, p, b * batch + i) for i, (k, v, p) in rows]
            events = [
                faust.Event(app, k, v, [], Message(name, p, b * batch + i, 0.0, 0, [], k, v, None,
                                                   time_in=time.monotonic()))
                for i, (k, v, p) in rows
            ]  # fmt: skip
            start = time.perf_counter()
            result = pipeline.process(inbound, store)
            timings["pipeline"] += time.perf_counter() - start
            start = time.perf_counter()
            parts.analytics(result, events)
            timings["analytics"] += time.perf_counter() - start
            start = time.perf_counter()
            parts.metrics.observe_batch(result, events)
            timings["metrics"] += time.perf_counter() - start
            if (b + 1) % flush_every == 0 or b == batches - 1:
                start = time.perf_counter()
                parts.stores.flush()
                timings["flush"] += time.perf_counter() - start
            total += result.readings
        gc.enable()
        per = {f"{name}_us_per_reading": round(1e6 * t / total, 2) for name, t in timings.items()}
        observers = sum(per[f"{name}_us_per_reading"] for name in ("analytics", "metrics", "flush"))
        return {
            "readings": total,
            "batch": batch,
            "devices": devices,
            "flush_every": flush_every,
            **per,
            "observers_us_per_reading": round(observers, 2),
            "observers_pct_of_pipeline": round(100 * observers / per["pipeline_us_per_reading"], 1),
            "machine": f"{platform.machine()} nproc={os.cpu_count()} {platform.python_version()}",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--flush-every", type=int, default=5, help="batches between flushes")
    args = parser.parse_args()
    if min(args.batches, args.batch, args.devices, args.flush_every) < 1:
        parser.error("--batches, --batch, --devices and --flush-every must be >= 1")
    result = asyncio.run(run(args.batches, args.batch, args.devices, args.flush_every))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
