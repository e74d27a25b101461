"""What `edgeml optimize` buys on small models trained here, against the issue's targets.

    python bench/bench_optimize.py                  # full run (~3-5 min on 2 cores)
    python bench/bench_optimize.py --quick          # small models only (~30 s)
    python bench/bench_optimize.py --markdown docs/optimization-results.md

Models (fixed seeds, synthetic data from `models.optimize.zoo`): MLPs of ~37k and ~400k params,
a 300-tree gradient-boosted ensemble, a 120-tree random forest and an MLP regressor. Each is
registered in a temporary registry with its holdout (2000 rows: the first half calibrates /
selects, the second half is the evaluation set) and optimized several ways:

- `formats`: dynamic, static, fp16 each measured on the fp32 model (objective "size" so all
  three are evaluated; nothing registered);
- `prune+int8+zstd`: prune 50 % with an 8-epoch masked fine-tune, dynamic int8, zstd;
- `trees+zstd` (tree models): fewer trees (refit), graph, zstd;
- `full`: every step with the default "balanced" objective, registered; the registered
  version's session creation is then timed in a fresh session cache.

Latency is wall-clock per `predict` call through onnxruntime (1 intra-op thread), single row:
p50/p99 over >= 200 calls, best of 3 rounds; batch-64 throughput in rows/s. Figures print side
by side with each target; nothing asserts (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeml.models.optimize import zoo
from edgeml.models.optimize.pipeline import optimize
from edgeml.models.optimize.report import OptimizationReport
from edgeml.models.registry import ModelRegistry, SessionCache

Check = tuple[str, str, str, bool | None]  # (model, target, measured, met; None = figure only)


def call_floor_us(timing_s: float) -> float:
    """p50 of one `predict` through the same path on an Identity model: the per-call overhead
    (Python + onnxruntime `run`) that no optimization of the model itself can remove."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgeml.models.latency import measure
    from edgeml.models.registry import session_options

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 16]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(
        model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"]
    )
    rows = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    runs = [measure(lambda r: sess.run(["y"], {"x": r}), rows, single_calls=3000) for _ in range(3)]
    return min(r.p50_us for r in runs)


def _ratio(a: float | None, b: float | None) -> float:
    return (a or 0.0) / b if b else 0.0


def _format_checks(name: str, report: OptimizationReport, params: int) -> list[Check]:
    base = report.baseline
    out: list[Check] = []
    for step in ("dynamic", "static"):
        r = report.step(step)
        if not r.measured:
            continue
        smaller = _ratio(base.size_bytes, r.size_bytes)
        acc = (base.quality["accuracy"] - r.quality["accuracy"]) * 100
        auc = base.quality["auc"] - r.quality["auc"]
        size_target = smaller >= 3.5 if step == "dynamic" else None
        out.append((name, f"{step} int8 >= 3.5x smaller", f"{smaller:.2f}x", size_target))
        out.append((name, f"{step} int8 <= 0.5 pt accuracy lost", f"{acc:+.2f} pt", acc <= 0.5))
        out.append((name, f"{step} int8 <= 0.005 AUC lost", f"{auc:+.4f}", auc <= 0.005))
        if params >= 100_000:
            faster = _ratio(base.p50_us, r.p50_us)
            met = faster >= 1.5 if step == "dynamic" else None
            out.append((name, f"{step} int8 >= 1.5x faster p50", f"{faster:.2f}x", met))
    r = report.step("fp16")
    if r.measured:
        smaller = _ratio(base.size_bytes, r.size_bytes)
        out.append((name, "fp16 >= 1.5x smaller", f"{smaller:.2f}x", smaller >= 1.5))
    return out


def _prune_checks(name: str, report: OptimizationReport) -> list[Check]:
    base, final = report.baseline, report.final
    smaller = _ratio(base.size_bytes, final.size_bytes)
    acc = (base.quality["accuracy"] - final.quality["accuracy"]) * 100
    steps = "+".join(s.step for s in report.steps if s.status == "kept")
    return [
        (name, f"prune 50% + int8 + zstd >= 5x smaller ({steps})", f"{smaller:.2f}x", smaller >= 5),
        (name, "prune 50% + int8 + zstd <= 0.5 pt accuracy lost", f"{acc:+.2f} pt", acc <= 0.5),
    ]


def _tree_checks(name: str, report: OptimizationReport, floor_us: float) -> list[Check]:
    base, trees, final = report.baseline, report.step("trees"), report.final
    if not trees.measured:
        return [(name, "trees compacted", trees.note, False)]
    smaller = _ratio(base.size_bytes, trees.size_bytes)
    shipped = _ratio(base.size_bytes, final.size_bytes)
    faster = _ratio(base.p50_us, trees.p50_us)
    batch = _ratio(trees.batch64_per_s, base.batch64_per_s)
    above = _ratio((base.p50_us or 0) - floor_us, (trees.p50_us or 0) - floor_us)
    auc = base.quality["auc"] - final.quality["auc"]
    return [
        (name, "trees >= 3.5x smaller (ONNX, before zstd)", f"{smaller:.2f}x", smaller >= 3.5),
        (name, "trees + zstd: shipped artifact smaller", f"{shipped:.2f}x", shipped >= 3.5),
        (name, "trees >= 2x faster p50", f"{faster:.2f}x (batch-64 {batch:.2f}x)", faster >= 2),
        (name, "trees: p50 above the per-call floor", f"{above:.2f}x faster", None),
        (name, "trees <= 0.01 AUC lost", f"{auc:+.4f}", auc <= 0.01),
    ]


def _latency_checks(name: str, report: OptimizationReport, session_ms: float) -> list[Check]:
    out: list[Check] = [
        (name, "session creation <= 50 ms (registered)", f"{session_ms:.1f} ms", session_ms <= 50)
    ]
    for r in report.steps:
        if r.measured and r.p50_us and r.p99_us and r.step != "compress":
            ratio = r.p99_us / r.p50_us
            out.append((name, f"{r.step}: p99 <= 2x p50", f"{ratio:.2f}x", ratio <= 2.0))
    return out


def _met(met: bool | None, no: str) -> str:
    return "figure" if met is None else ("yes" if met else no)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small models only.")
    parser.add_argument("--timing-s", type=float, default=0.3, help="Timing seconds per round.")
    parser.add_argument("--markdown", type=Path, help="Write reports + checks as markdown here.")
    args = parser.parse_args(argv)
    names = (
        ["mlp-tiny", "gbm-small", "mlp-regressor-tiny"]
        if args.quick
        else ["mlp-40k", "mlp-400k", "gbm", "forest", "mlp-regressor"]
    )
    console = Console(width=220, highlight=False)
    machine = f"{platform.machine()} {platform.processor() or ''} nproc={os.cpu_count()}".strip()
    header = (
        f"bench_optimize {' '.join(sys.argv[1:])} | {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC "
        f"| {machine} | load avg {os.getloadavg()[0]:.1f}"
    )
    console.print(header)
    floor = call_floor_us(args.timing_s)
    console.print(f"per-call floor (Identity model, same path): p50 {floor:.2f} µs")
    checks: list[Check] = []
    markdown = [f"_{header}_\n", f"Per-call floor (Identity model): p50 {floor:.2f} µs\n"]
    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(Path(tmp), sessions=SessionCache())
        for name in names:
            start = time.perf_counter()
            demo = zoo.train(name, n_holdout=4000)
            manifest = zoo.register_demo(registry, demo, name)
            console.print(
                f"\n[bold]{name}[/bold]: {zoo.DEMOS[name]}; {demo.n_params:,} params; "
                f"trained in {time.perf_counter() - start:.1f} s"
            )
            runs: dict[str, dict[str, Any]] = {}
            family = "trees" if demo.n_params == 0 else "mlp"
            common = {"source": demo.source(), "timing_s": args.timing_s}
            if family == "mlp":
                runs["formats"] = {
                    "steps": ["dynamic", "static", "fp16"],
                    "objective": "size",
                    "register": False,
                }
                runs["prune+int8+zstd"] = {
                    "steps": ["prune", "dynamic", "compress"], "objective": "size",
                    "register": False,
                }  # fmt: skip
            else:
                runs["trees+zstd"] = {"steps": ["trees", "graph", "compress"], "register": False}
            runs["full"] = {"register": True}
            reports: dict[str, OptimizationReport] = {}
            for label, options in runs.items():
                report = optimize(registry, name, manifest.version, **common, **options)
                reports[label] = report
                console.print(f"[bold]{name} / {label}[/bold]")
                console.print(report.to_table())
                markdown += [f"### {name} / {label}\n", report.to_markdown()]
            full = reports["full"]
            version = full.registered.split("@")[1] if full.registered else manifest.version
            fresh = ModelRegistry(Path(tmp), sessions=SessionCache())
            session_ms = fresh.load(name, version).memory.session_create_ms
            if demo.task == "classifier" and family == "mlp":
                checks += _format_checks(name, reports["formats"], demo.n_params)
                checks += _prune_checks(name, reports["prune+int8+zstd"])
            elif family == "trees":
                checks += _tree_checks(name, reports["trees+zstd"], floor)
            checks += _latency_checks(name, full, session_ms)
            console.print(
                f"{name} full: final {full.final_step}, {full.size_ratio:.2f}x smaller, "
                f"Δ{full.primary} {full.quality_delta:+.4f}, registered {full.registered}"
            )
    table = Table(title="targets (from the issue) vs measured")
    for col in ("model", "target", "measured", "met"):
        table.add_column(col)
    for model, target, measured, met in checks:
        table.add_row(model, target, measured, _met(met, "[red]NO[/red]"))
    console.print(table)
    markdown += [
        "### Targets vs measured\n",
        "| model | target | measured | met |",
        "|---|---|---|---|",
        *[f"| {m} | {t} | {v} | {_met(ok, '**no**')} |" for m, t, v, ok in checks],
        "",
    ]
    if args.markdown:
        args.markdown.write_text("\n".join(markdown) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
