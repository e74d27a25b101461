"""The load generator: simulated readings to one topic, paced or as fast as possible.

    python -m bench.load --topic T --devices 100 --count 50 --batch 1 --rate 2000 --result r.json

Runs as its own process (so it never shares a CPU queue with the checker or the worker's event
loop). Messages come from `sim.generator` (realistic signals with labelled faults) through
`sim.sender` (the same planner and paced sender as `edgeml simulate`): every reading carries
`sent_at`, its *scheduled* send time, so a slow sender or a queue anywhere shows up as latency.
Only readings are sent (no maintenance events, no malformed messages). Prints one JSON line with
what was sent (and writes it to `--result`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LoadSpec", "main"]


@dataclass(frozen=True)
class LoadSpec:
    """One generator run. `rate` is readings/s (0 = as fast as possible)."""

    topic: str
    devices: int
    count: int
    batch: int = 1
    rate: float = 0.0
    seed: int = 7
    start_ts: float = 0.0  # event time of the first reading; 0 = now - count * interval
    interval: float = 1.0
    warmup: float = 60.0
    incident_every: float = 300.0
    skip: int = 0  # send only readings [skip, skip + take) of the run's event-time order
    take: int = 0  # 0 = all after `skip`

    @property
    def readings(self) -> int:
        total = self.devices * self.count - self.skip
        return min(total, self.take) if self.take else total

    def args(self) -> list[str]:
        return [
            "--topic", self.topic, "--devices", str(self.devices), "--count", str(self.count),
            "--batch", str(self.batch), "--rate", str(self.rate), "--seed", str(self.seed),
            "--start-ts", repr(self.start_ts), "--interval", str(self.interval),
            "--warmup", str(self.warmup), "--incident-every", str(self.incident_every),
            "--skip", str(self.skip), "--take", str(self.take),
        ]  # fmt: skip

    def sim_config(self) -> Any:
        from edgeml.sim.generator import SimConfig

        start = self.start_ts or round(time.time() - self.count * self.interval, 3)
        return SimConfig(
            devices=self.devices,
            count=self.count,
            seed=self.seed,
            interval=self.interval,
            start_ts=start,
            warmup=self.warmup,
            incident_every=self.incident_every,
        )


class _CountingProducer:
    """Wraps the aiokafka producer to count payload bytes."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.bytes = 0
        self.largest = 0

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]:
        size = len(value or b"")
        self.bytes += size
        self.largest = max(self.largest, size)
        return await self.producer.send(topic, value=value, key=key)


async def run(spec: LoadSpec, bootstrap: str, linger_ms: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    from edgeml.sim.generator import simulate
    from edgeml.sim.sender import as_fast_as_possible, fixed_rate, plan_messages, send_messages

    config = spec.sim_config()
    sim = simulate(config)
    stop = spec.skip + spec.take if spec.take else None
    messages = plan_messages(  # lazy: a million readings never sit in memory at once
        itertools.islice(sim.readings(), spec.skip, stop),
        pace=fixed_rate(spec.rate) if spec.rate > 0 else as_fast_as_possible,
        batch=spec.batch,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_request_size=4 * 1024 * 1024,
        client_id="edgeml-bench-load",
    )
    await producer.start()
    counting = _CountingProducer(producer)
    try:
        # Paced runs start half a second from now, so the first messages are not late already.
        started_at = time.time() + (0.5 if spec.rate > 0 else 0.0)
        stats = await send_messages(
            counting, messages, topic_name=lambda _: spec.topic, started_at=started_at
        )
        await producer.flush()
    finally:
        await producer.stop()
    return {
        "topic": spec.topic,
        "readings": stats.readings,
        "messages": stats.messages,
        "batch": spec.batch,
        "devices": spec.devices,
        "offered_rate": spec.rate,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at,
        "achieved_rate": round(stats.rate, 1),
        "payload_bytes_mean": round(counting.bytes / max(stats.messages, 1), 1),
        "payload_bytes_max": counting.largest,
        "start_ts": config.start_ts,
        "end_ts": config.end_ts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--count", type=int, default=100, help="Readings per device.")
    parser.add_argument("--batch", type=int, default=1, help="Readings per message.")
    parser.add_argument("--rate", type=float, default=0.0, help="Readings/s; 0 = max.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start-ts", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--incident-every", type=float, default=300.0)
    parser.add_argument("--skip", type=int, default=0, help="Readings of the run to skip.")
    parser.add_argument("--take", type=int, default=0, help="Readings to send (0 = all).")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--result", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = LoadSpec(
        topic=args.topic,
        devices=args.devices,
        count=args.count,
        batch=args.batch,
        rate=args.rate,
        seed=args.seed,
        start_ts=args.start_ts,
        interval=args.interval,
        warmup=args.warmup,
        incident_every=args.incident_every,
        skip=args.skip,
        take=args.take,
    )
    result = asyncio.run(run(spec, args.bootstrap, args.linger_ms))
    line = json.dumps(result)
    if args.result is not None:
        args.result.write_text(line + "\n")
    sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
