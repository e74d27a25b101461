"""System A, the ceiling: a raw aiokafka passthrough (consume → produce the same bytes).

    python -m bench.passthrough --bootstrap H:P --input T --output T2 --group G

No decoding, no Faust: `getmany` a batch, `send` every message (same key, so the same default
partitioner as the worker), await the whole batch's acknowledgements, commit about once a
second (Faust commits on a timer too). Producer settings match the worker's: acks=all, the same
linger. Prints `passthrough: ready` once it has partitions assigned.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence

__all__ = ["READY", "main"]

READY = "passthrough: ready"


async def run(
    bootstrap: str, source: str, target: str, group: str, linger_ms: int, fetch_wait_ms: int
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
        client_id=f"{group}-consumer",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_request_size=4 * 1024 * 1024,
        client_id=f"{group}-producer",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await producer.start()
    await consumer.start()
    ready = False
    next_commit = time.monotonic() + 1.0
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            if not ready and consumer.assignment():
                print(READY, flush=True)
                ready = True
            pending = [
                await producer.send(target, message.value, key=message.key)
                for messages in batches.values()
                for message in messages
            ]
            if pending:
                await asyncio.gather(*pending)
            if time.monotonic() >= next_commit:
                await consumer.commit()
                next_commit = time.monotonic() + 1.0
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=500)
    args = parser.parse_args(argv)
    asyncio.run(
        run(
            args.bootstrap,
            args.input,
            args.output,
            args.group,
            args.linger_ms,
            args.fetch_max_wait_ms,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
