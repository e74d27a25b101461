"""The job on bytewax, the idiomatic way: Kafka source, `key_on`, `stateful_map`, Kafka sink.

    python -m bench.peers.bytewax_app --bootstrap H:P --input T --output T2 --group G

State per message key (the device id) as river.stats objects in bytewax's memory (no recovery
store configured). JSON with orjson. Runs in the peers' venv, one worker (`cli_main`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from bench.peers.job import RiverDeviceStats, score

READY = "peer: ready"


def build(bootstrap: str, source: str, target: str, group: str, linger_ms: int) -> Any:
    import bytewax.operators as op
    import orjson
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow

    flow = Dataflow("peer-job")
    messages = op.input(
        "in",
        flow,
        KafkaSource(
            [bootstrap], [source], tail=True,
            add_config={"group.id": group, "enable.auto.commit": "false"},
        ),
    )  # fmt: skip
    keyed = op.map("decode", messages, lambda m: (m.key.decode(), orjson.loads(m.value)))

    def mapper(
        stats: RiverDeviceStats | None, message: dict[str, Any]
    ) -> tuple[RiverDeviceStats, bytes]:
        stats = stats or RiverDeviceStats()
        return stats, orjson.dumps(score(stats, message))

    scored = op.stateful_map("score", keyed, mapper)
    out = op.map("encode", scored, lambda kv: KafkaSinkMessage(kv[0].encode(), kv[1]))
    op.output(
        "out", out, KafkaSink([bootstrap], target, add_config={"linger.ms": str(linger_ms),
                                                               "acks": "all"}),
    )  # fmt: skip
    return flow


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--linger-ms", type=int, default=5)
    args = parser.parse_args(argv)
    from bytewax.run import cli_main

    flow = build(args.bootstrap, args.input, args.output, args.group, args.linger_ms)
    print(READY, flush=True)
    cli_main(flow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
