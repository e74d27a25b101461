"""Where a worker's time goes: py-spy on a system under test, summarized by pipeline step.

    python -m bench.profile [--variant C] [--kind single] [--readings 30000] [--raw FILE]
    python -m bench.profile --rate 1000 --readings 20000     # paced load instead of a backlog
    python -m bench.profile --summarize FILE.raw      # only summarize an existing py-spy file

Produces a backlog, starts the system and records it with `py-spy record -f raw` (200 Hz)
while it drains (or, with `--rate`, starts the system and offers that many readings/s); prints
the share of samples per pipeline step (the innermost frame that names a step wins, so nested
costs are not counted twice) and the top self-time functions. Needs py-spy with the right to
attach (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import add_options, cleanup, create_topics, emit, env_from_args, print_json

__all__ = ["CATEGORIES", "GENERIC", "main", "summarize"]

# (category, frame pattern): checked from the innermost frame outwards; the first hit names
# the sample. Order matters only among patterns that can hit the same frame.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("state save: to_bytes", r"DeviceState\.to_bytes"),
    ("state load: from_bytes", r"DeviceState\.from_bytes"),
    ("scoring: ONNX", r"LoadedModel\.predict|InferenceSession|Session\.run"),
    ("scoring: features", r"FeatureExtractor\."),
    ("scoring: rest (detectors, threshold, alerts, failure inputs)", r"Scorer\.score_many"),
    ("validation", r"parse_message"),
    ("analytics observer (agents/analytics)", r"AnalyticsObserver|aggregate_sites"),
    ("metrics observer (app/metrics)", r"observe_batch|Metrics\."),
    ("state save: Faust table set + changelog", r"TableStateStore\.save"),
    ("state load: table get", r"TableStateStore\.load"),
    ("pipeline: predictions/alerts wire", r"ReadingPipeline\.process"),
    ("publish: our sends into the producer", r"Publisher\.publish"),
    ("agent body: rest", r"score_readings"),
    ("Faust changelog buffer (ProducerBuffer)", r"ProducerBuffer\."),
    ("aiokafka producer/sender (network out)", r"aiokafka/producer|Sender\._|AIOKafkaProducer"),
    ("aiokafka/Faust consumer (network in)", r"Fetcher|fetcher\.py|Consumer\._|consumer\.py"),
    ("Faust topic send (table changelogs, repartition)", r"faust/topics\.py|faust/tables"),
    ("Faust stream/conductor per message", r"faust/streams|conductor|faust/agents"),
)
# Checked only when no frame of the sample matched a category above.
GENERIC: tuple[tuple[str, str], ...] = (
    ("event loop idle (select)", r"EpollSelector\.select"),
    ("event loop / asyncio / mode (unattributed)", r"asyncio/|mode/"),
)


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    generic = [(name, re.compile(pattern)) for name, pattern in GENERIC]
    by_category: collections.Counter[str] = collections.Counter()
    by_self: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        by_self[re.sub(r":\d+\)$", ")", frames[-1])] += n
        by_category[_category(frames, compiled) or _category(frames, generic) or "other"] += n
    share = {k: round(100.0 * v / max(total, 1), 1) for k, v in by_category.most_common()}
    top_self = {k: round(100.0 * v / max(total, 1), 1) for k, v in by_self.most_common(top)}
    return {"samples": total, "categories_pct": share, "top_self_pct": top_self}


def _category(frames: list[str], patterns: list[tuple[str, re.Pattern[str]]]) -> str | None:
    for frame in reversed(frames):
        for name, pattern in patterns:
            if pattern.search(frame):
                return name
    return None


def print_summary(result: dict[str, Any]) -> None:
    emit(f"profile: {result['samples']} samples; share by step (% of samples):")
    for name, pct in result["categories_pct"].items():
        emit(f"  {pct:5.1f}  {name}")
    emit("top self time:")
    for name, pct in result["top_self_pct"].items():
        emit(f"  {pct:5.1f}  {name[:110]}")


def record(args: argparse.Namespace) -> Path:
    from bench.checker import Probe
    from bench.ladder import KINDS, _wait_outputs, produce
    from bench.load import LoadSpec
    from bench.systems import input_topic, output_topic, start

    spy_bin = shutil.which("py-spy") or shutil.which(
        "py-spy", path=str(Path(sys.executable).parent)
    )
    if spy_bin is None:
        raise SystemExit("profile: py-spy is not installed (pip install py-spy)")
    env = env_from_args(args)
    prefix = env.prefix(f"profile-{args.variant.lower()}")
    out = output_topic(args.variant, prefix)
    create_topics(env, [input_topic(prefix), out])
    batch = KINDS[args.kind]
    spec = LoadSpec(
        input_topic(prefix),
        devices=args.devices,
        count=max(args.readings // args.devices, batch),
        batch=batch,
    )
    if args.rate:
        spec = LoadSpec(**{**spec.__dict__, "rate": args.rate})
    raw = Path(args.raw or env.run_dir / f"profile-{args.variant}-{args.kind}.raw")
    probe = Probe(env.bootstrap)
    try:
        load: dict[str, Any] = {} if args.rate else produce(env, spec)
        begin = probe.end(out)
        running = start(args.variant, env, prefix, app_id=f"{prefix}app")
        spy = subprocess.Popen(
            [spy_bin, "record", "-p", str(running.pids[0]), "-f", "raw", "-r", "200",
             "-o", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        t0 = time.monotonic()
        if args.rate:
            load = produce(env, spec)
        _wait_outputs(probe, out, begin, load["messages"], stall_s=30.0, alive=running.alive)
        how = f"offered at {args.rate:,.0f}/s" if args.rate else "drained"
        emit(f"profile: {load['readings']:,} readings {how} in {time.monotonic() - t0:.1f} s")
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
        running.stop()
    finally:
        probe.close()
        cleanup(env, prefix)
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--summarize", type=Path, default=None, help="Existing py-spy raw file.")
    parser.add_argument("--variant", choices=["A", "B", "C"], default="C")
    parser.add_argument("--kind", choices=["single", "batched"], default="single")
    parser.add_argument("--readings", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0, help="Paced readings/s (0: backlog).")
    parser.add_argument("--raw", default=None, help="Where to write the py-spy raw output.")
    args = parser.parse_args(argv)
    raw = args.summarize or record(args)
    result = summarize(raw)
    print_summary(result)
    emit(f"raw profile: {raw}")
    print_json({"raw": str(raw), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
