"""The job on quix-streams, the idiomatic way: a StreamingDataFrame with a stateful `apply`.

    python -m bench.peers.quix_app --bootstrap H:P --input T --output T2 --group G
        --state rocksdb|memory --state-dir DIR

JSON in and out through quix's own (de)serialisers, state per message key (the device id) in
quix's state store: RocksDB (its default, with a changelog topic) or its in-memory store
(`register_store(store_type=MemoryStore)`, changelog kept). Runs in the peers' venv.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bench.peers.job import DeviceStats, ew_matches_river, score

READY = "peer: ready"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state", choices=["rocksdb", "memory"], default="rocksdb")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--linger-ms", type=int, default=5)
    args = parser.parse_args(argv)
    if not ew_matches_river():
        raise SystemExit("peer job: EW recurrences differ from river.stats")

    from quixstreams import Application, State
    from quixstreams.state.memory import MemoryStore

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        producer_extra_config={"linger.ms": args.linger_ms, "acks": "all"},
    )
    source = app.topic(args.input, value_deserializer="json")
    target = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(source)
    if args.state == "memory":
        sdf.register_store(store_type=MemoryStore)

    def process(message: dict[str, Any], state: State) -> dict[str, Any]:
        stats = DeviceStats(state.get("stats"))
        out = score(stats, message)
        state.set("stats", stats.state)
        return out

    sdf = sdf.apply(process, stateful=True)
    sdf.to_topic(target)
    print(READY, flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
