"""`python -m bench` (= `make bench`): every benchmark, then one line of JSON with the summary.

    python -m bench [--quick] [--only ladder,latency,scaling,memory,steps,edge] [--no-docs]

Order: per-step costs, the ceiling ladder (single-reading and batched messages), latency at
fixed rates (plus 50 % of C's ceiling), scaling, memory, the edge agent on one core
(`bench.edge`). Appends a section to docs/benchmarks.md and writes docs/img/latency.png unless
`--no-docs`. Needs a running broker (`make broker-up`). About 15 minutes in full on 2 cores,
under 3 with `--quick`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import add_options, emit, env_from_args, print_json, versions

PARTS = ("steps", "ladder", "peers", "latency", "scaling", "memory", "edge")


REQUIRED = (
    "ceiling_a_rps",
    "noop_b_rps",
    "pipeline_c_rps",
    "ratio_c_over_a",
    "ratio_b_over_a",
    "ratio_c_over_b",
    "batched_readings_per_s",
    "batched_ratio_c_over_a",
    "p50_ms_at_2000",
    "p99_ms_at_2000",
    "rss_growth_pct",
    "state_bytes_per_device",
    "peer_bytewax_ratio",
    "peer_quix_mem_ratio",
    "peer_quix_rocksdb_ratio",
    "steps_us_batched",
)


def summarize(details: dict[str, Any], elapsed: float, quick: bool) -> dict[str, Any]:
    """The summary line: always every key of `REQUIRED` (null where that part did not run)."""
    nan = float("nan")
    summary: dict[str, Any] = dict.fromkeys(REQUIRED)
    ladder = details.get("ladder", {})
    single, batched = ladder.get("single"), ladder.get("batched")
    if single:
        summary |= {
            "ceiling_a_rps": single["rate"]["A"],
            "noop_b_rps": single["rate"]["B"],
            "pipeline_c_rps": single["rate"]["C"],
            "ratio_c_over_a": single["ratio_c_over_a"],
            "ratio_b_over_a": single["ratio_b_over_a"],
            "ratio_c_over_b": single["ratio_c_over_b"],
            "cpu_us_per_reading_single": single["cpu_us_per_reading"],
        }
        flat = single.get("flat_lag")
        if flat:
            summary["flat_lag_rps_single"] = {v: r["ceiling"] for v, r in flat.items()}
    if batched:
        summary |= {
            "batched_readings_per_s": batched["rate"]["C"],
            "batched_a_readings_per_s": batched["rate"]["A"],
            "batched_b_readings_per_s": batched["rate"]["B"],
            "batched_ratio_c_over_a": batched["ratio_c_over_a"],
            "batched_ratio_c_over_b": batched["ratio_c_over_b"],
            "cpu_us_per_reading_batched": batched["cpu_us_per_reading"],
        }
    if ladder:
        summary["ladder_lost"] = sum(p["lost"] for p in ladder.values() if isinstance(p, dict))
        summary["ladder_duplicates"] = sum(
            p["duplicates"] for p in ladder.values() if isinstance(p, dict)
        )
    peers = details.get("peers")  # C over each peer, same run, interleaved (bench.peers)
    if peers:
        for key in ("peer_bytewax_ratio", "peer_quix_mem_ratio", "peer_quix_rocksdb_ratio"):
            summary[key] = peers[key]
        summary["peer_rates"] = {kind: d["rate"] for kind, d in peers["kinds"].items()}
    latency = details.get("latency")
    if latency:
        summary["p50_ms_at_2000"] = latency.get("p50_ms_at_2000", nan)
        summary["p99_ms_at_2000"] = latency.get("p99_ms_at_2000", nan)
        table: dict[str, dict[str, Any]] = {}
        alerts: list[dict[str, Any]] = []
        for variant, data in latency["variants"].items():
            for s in data["steps"]:
                table.setdefault(variant, {})[f"{s['offered_rate']:.0f}"] = {
                    k: s["latency_ms"][k] for k in ("p50", "p99", "p999")
                }
                if variant == "C" and s["alert_latency_ms"]["n"]:
                    alerts.append(s["alert_latency_ms"])
        summary["latency_ms"] = table
        if alerts:
            summary["fault_alerts"] = sum(a["n"] for a in alerts)
            summary["fault_alert_p50_ms_max_over_rates"] = max(a["p50"] for a in alerts)
        summary["latency_lost"] = sum(
            s["lost"] for d in latency["variants"].values() for s in d["steps"]
        )
    memory = details.get("memory")
    if memory:
        summary["rss_growth_pct"] = memory["rss_growth_pct"]
        summary["rss_end_mb"] = memory["rss_end_mb"]
        summary["state_bytes_per_device"] = memory["state_bytes_per_device"]
        summary["memory_readings"] = memory["processed"]
    scaling = details.get("scaling")
    if scaling:
        summary["scaling_rps"] = {
            str(r["workers"]): r["rate_after_generator"] for r in scaling["workers"]
        }
    steps = details.get("steps")
    if steps:
        rows = steps["rows"]
        pick = {
            "validation": "validation (parse_message)",
            "features": "feature update (FeatureExtractor.update)",
            "pipeline": "ReadingPipeline.process end to end (500 messages per batch; "
            "state via to_bytes), compiled",
            "pipeline_reference": "ReadingPipeline.process end to end (500 messages per "
            "batch; state via to_bytes), reference",
        }
        summary["step_us"] = {k: rows[v] for k, v in pick.items() if v in rows}
        # the in-process target (<= 8 us per reading, batched): the compiled pipeline
        summary["steps_us_batched"] = summary["step_us"].get("pipeline")
    summary |= {"nproc": os.cpu_count(), "quick": quick, "elapsed_s": round(elapsed, 1)}
    return summary


def _latest_ceiling(out_dir: Path) -> float | None:
    """C's single-message drain rate from the newest full run recorded under `out_dir`."""
    import json

    runs = sorted(out_dir.glob("*/details.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs:
        try:
            details = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if details.get("env", {}).get("quick"):
            continue
        rate = details.get("ladder", {}).get("single", {}).get("rate", {}).get("C")
        if rate:
            emit(f"latency: C's ceiling {rate:,.0f}/s from {path}")
            return float(rate)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--only", default=",".join(PARTS), help="Parts to run, comma list.")
    parser.add_argument("--no-docs", action="store_true", help="Do not touch docs/.")
    parser.add_argument(
        "--lag",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Flat-lag ceiling for single messages (default: full runs only).",
    )
    parser.add_argument("--readings", type=int, default=None, help="Memory run readings.")
    parser.add_argument("--ladder-readings", type=int, default=None, help="Ladder backlog.")
    parser.add_argument("--devices", type=int, default=1000, help="Devices (ladder, memory).")
    parser.add_argument(
        "--ceiling",
        type=float,
        default=None,
        help="C's single-message ceiling for the latency step at 50 %% when the ladder does not "
        "run (default: from the latest full run's figures under --out-dir, if any).",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    for part in parts:
        if part not in PARTS:
            parser.error(f"--only: {part!r} is not one of {', '.join(PARTS)}")
    env = env_from_args(args)
    began = time.monotonic()
    details: dict[str, Any] = {"env": env.describe(), "versions": versions()}
    emit(f"bench: run {env.run_id}, {'quick' if env.quick else 'full'}, broker {env.bootstrap}")
    if "steps" in parts:
        from bench.steps import print_table, steps_command

        details["steps"] = steps_command(env, quick=env.quick)
        print_table(details["steps"])
    if "ladder" in parts:
        from bench.ladder import ladder_command

        lag = args.lag if args.lag is not None else not env.quick
        ladder = ladder_command(
            env,
            kinds=["single", "batched"],
            readings=args.ladder_readings,
            devices=args.devices,
            lag=False,
        )
        if lag:
            from bench.checker import Probe
            from bench.ladder import flat_ceiling

            single = ladder["single"]
            probe = Probe(env.bootstrap)
            try:
                single["flat_lag"] = {
                    v: flat_ceiling(
                        env, v, "single", single["rate"][v], probe=probe, devices=args.devices
                    )
                    for v in ("A", "B", "C")
                }
            finally:
                probe.close()
        details["ladder"] = {k: v for k, v in ladder.items() if k in ("single", "batched")}
    if "peers" in parts:
        from bench.peers import peers_command, print_peers

        details["peers"] = peers_command(env)
        print_peers(details["peers"])
    if "latency" in parts:
        from bench.latency import latency_command

        ceiling = details.get("ladder", {}).get("single", {}).get("rate", {}).get("C")
        ceiling = ceiling or args.ceiling or _latest_ceiling(env.out_dir)
        details["latency"] = latency_command(env, ceiling=ceiling)
    if "scaling" in parts:
        from bench.scaling import scaling_command

        details["scaling"] = scaling_command(env, workers=(1, 2) if env.quick else (1, 2, 3))
    if "memory" in parts:
        from bench.memory import memory_command

        details["memory"] = memory_command(env, readings=args.readings, devices=args.devices)
    if "edge" in parts:  # the edge agent on one core (`python -m bench.edge`)
        from bench.edge import run as edge_run

        details["edge"] = edge_run(env.bootstrap, count=500 if env.quick else 2500)
    summary = summarize(details, time.monotonic() - began, env.quick)
    if not args.no_docs:
        from bench.report import append_markdown, plot_latency

        command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
        if "latency" in details:
            emit(f"plot: {plot_latency(details['latency'])}")
        emit(f"results appended to {append_markdown(summary, details, command)}")
    raw = env.run_dir / "details.json"
    import json

    from bench.common import plain

    raw.write_text(json.dumps(plain(details), indent=1))
    emit(f"all figures: {raw}")
    print_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
