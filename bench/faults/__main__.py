"""`python -m bench.faults` (= `make faults`): run the fault scenarios and print their figures.

    python -m bench.faults                         # every scenario at full size (50,000 readings)
    python -m bench.faults --scenario R1 --count 50000
    python -m bench.faults --scenario R1,R1d,R4 --count 3000 --devices 20 --seconds 10

Starts its own single-node broker on free ports in a temporary directory (R3 kills it), unless
`--bootstrap` names one (then R3 cannot run). Exits 1 if any scenario fails a check or misses a
timing target (`--ignore-targets`: only the checks count); the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.common import emit, print_json, versions
from bench.faults.procs import Broker
from bench.faults.scenarios import SCENARIOS, Options, Result, run_scenario


def _names(text: str) -> list[str]:
    if text == "all":
        return list(SCENARIOS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


def _fractions(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if not values or not all(0 < v < 1 for v in values) or list(values) != sorted(values):
        raise argparse.ArgumentTypeError("expected increasing fractions in (0, 1), e.g. 0.2,0.5")
    return values


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        type=_names,
        default=list(SCENARIOS),
        help=f"comma-separated, or all (default): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--count", type=int, default=50_000, help="valid readings per scenario")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="readings are sent over this")
    parser.add_argument(
        "--kills",
        type=_fractions,
        default=(0.2, 0.5, 0.8),
        help="R1/R1f: kill -9 at these fractions of the predictions",
    )
    parser.add_argument("--flush-kill", type=int, default=3, help="R1d: commit flush to die after")
    parser.add_argument("--outage-s", type=float, default=30.0, help="R3: broker down this long")
    parser.add_argument("--poison", type=float, default=0.01, help="R4: poison per valid reading")
    parser.add_argument(
        "--stall-s",
        type=float,
        default=45.0,
        help="no output this long while input waits = a stall",
    )
    parser.add_argument("--bootstrap", default=None, help="use this broker (no R3)")
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and data (default: tmp)")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="EDGEML_X=V",
        help="extra setting for every worker (repeatable), e.g. EDGEML_SESSION_TIMEOUT_S=60",
    )
    parser.add_argument(
        "--ignore-targets",
        action="store_true",
        help="timing targets (resume <= 15 s, SIGTERM <= 10 s) do not fail the run",
    )
    return parser.parse_args(argv)


def _pairs(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("EDGEML_"):
            raise SystemExit(f"--worker-env {item!r}: expected EDGEML_NAME=VALUE")
        pairs.append((name, value))
    return tuple(pairs)


def run_all(names: Sequence[str], broker: Broker, work_dir: Path, opts: Options) -> list[Result]:
    run_id = time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    return [run_scenario(name, broker, work_dir, run_id, opts) for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    opts = Options(readings=args.count, devices=args.devices, seconds=args.seconds,
                   kills=args.kills, flush_kill=args.flush_kill, outage_s=args.outage_s,
                   poison_fraction=args.poison, stall_s=args.stall_s,
                   keep_topics=args.keep_topics,
                   worker_env=_pairs(args.worker_env))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgeml-faults-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        if args.bootstrap:
            broker = Broker(args.bootstrap)
        else:
            broker = Broker.start_own(Path(tmp) / "kafka")
            emit(f"broker {broker.bootstrap} (home {broker.home})")
        emit(f"logs and worker data under {work_dir}; versions {versions()}")
        try:
            results = run_all(args.scenario, broker, work_dir, opts)
        finally:
            broker.stop()
    emit(
        "\n| scenario | checks | lost | dup | late | DLQ once/poison | fleet / rebuild | timings |"
    )
    emit("|---|---|---:|---:|---:|---:|---|---|")
    for r in results:
        f = r.figures
        timings = "; ".join(f"{k} {v}" for k, v in r.timings.items()) or "-"
        emit(f"| {r.name} | {'ok' if r.ok else 'FAIL'} | {f.lost:,} | {f.duplicates:,} | "
             f"{f.late:,} | {f.poison_on_dlq_once:,}/{f.poison_sent:,} | "
             f"{f.fleet_count} / {f.rebuild_count:,} | {timings} |")  # fmt: skip
    failed = [r.name for r in results if not r.ok]
    missed = [r.name for r in results if r.missed_targets]
    print_json({"scenarios": [r.as_dict() for r in results], "failed": failed,
                "missed_targets": missed})  # fmt: skip
    return 1 if failed or (missed and not args.ignore_targets) else 0


if __name__ == "__main__":
    sys.exit(main())
