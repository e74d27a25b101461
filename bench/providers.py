"""Execution providers side by side: scores, node placement and latency per provider list.

    python bench/providers.py --providers openvino                # in .cache/venv-openvino
    python bench/providers.py --providers cuda --providers tensorrt,cuda --with-mlp --check

Run as a file (not `-m bench...`), with the checkout on PYTHONPATH, in whichever environment
has the provider's onnxruntime build (`onnxruntime-openvino`, `onnxruntime-gpu`: each replaces
the plain `onnxruntime`, `infra/venvs.py`). For every model (`--model`, default: every model of
the registry, promoted version) it builds the in-process backend twice through
`onnx_replicas(..., providers=...)`: on CPU alone, and on each `--providers` list (CPU last,
as always), scores the model's holdout through `LocalBackend`, and prints per case: the providers
the session took, how many graph nodes each provider ran (one profiled run: a provider can be
"in use" and run nothing), single-row p50/p99 µs, batch-64 rows/s and max |score - CPU score|.
`--json` writes the figures, `--scores` an `.npz` with each case's scores (tests compare
them with the main environment's).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: the checkout's `edgeml` namespace
    sys.path.insert(0, str(ROOT))

from edgeml.models.inference.loading import onnx_replicas  # noqa: E402
from edgeml.models.inference.providers import (  # noqa: E402
    ALIASES,
    FALLBACKS,
    available_providers,
    node_placement,
    resolve,
)
from edgeml.models.latency import measure  # noqa: E402
from edgeml.models.registry import ModelRegistry, SessionCache  # noqa: E402


def run_case(
    registry: ModelRegistry, model_id: str, providers: list[str], x: np.ndarray
) -> dict[str, Any]:
    """One model on one provider list: scores through the backend, placement, latency."""
    (backend,) = onnx_replicas(registry, model_id, 1, providers=providers or None)
    name = backend.signature.inputs[0].name
    scores = asyncio.run(backend.infer({name: x}))["score"]
    asyncio.run(backend.close())
    timing = measure(lambda a: backend.predict({name: a}), x[:500], single_calls=300)
    model_bytes = registry.model_bytes(model_id)
    return {
        "model": registry.manifest(model_id).ref,
        "requested": providers or ["CPUExecutionProvider"],
        "session_providers": backend.metadata.get("providers"),
        "nodes_by_provider": node_placement(model_bytes, resolve(providers), x[:8]),
        "single_p50_us": round(timing.p50_us, 1),
        "single_p99_us": round(timing.p99_us, 1),
        "batch64_rows_per_s": round(timing.batch64_per_s),
        "scores": scores,
    }


def probe_mlp(registry: ModelRegistry, like: str = "failure-gbm", seed: int = 0) -> str:
    """Register `mlp-probe`: a 29-32-16-1 sigmoid MLP with random weights (onnx.helper, no
    sklearn), scores-only, on `like`'s inputs and holdout: a graph every GPU / OpenVINO
    provider takes whole, where a tree ensemble (`ai.onnx.ml`) runs on CPU anywhere."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    manifest = registry.manifest(like)
    width = len(manifest.inputs)
    rng = np.random.default_rng(seed)
    sizes = [width, 32, 16, 1]
    inits, nodes, prev = [], [], "input"
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]  # fmt: skip
        act = "Relu" if b != 1 else "Sigmoid"
        nodes.append(helper.make_node(act, [f"a{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Flatten", [prev], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mlp-probe",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "model.onnx"
        artifact.write_bytes(model.SerializeToString())
        holdout = registry.holdout_path(like)
        registry.register(
            "mlp-probe",
            artifact,
            kind="onnx",
            inputs=manifest.inputs,
            outputs=["probabilities"],
            task="scorer",
            training_data="random weights",
            metrics={},
            holdout=holdout,
            promote=True,
            measure_latency=False,
        )
    return "mlp-probe"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "models" / "artifacts")
    parser.add_argument("--model", action="append", help="model id (repeatable)")
    parser.add_argument(
        "--providers", action="append", help="comma-separated wish list (repeatable)"
    )
    parser.add_argument("--rows", type=int, default=4000, help="holdout rows to score")
    parser.add_argument("--with-mlp", action="store_true", help="also a random MLP (needs onnx)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless scores match")
    parser.add_argument("--atol", type=float, default=1e-5, help="with --check")
    parser.add_argument(
        "--require",
        action="store_true",
        help="with --check: each list's first provider must run nodes of some model",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--scores", type=Path, help="write each case's scores here (.npz)")
    args = parser.parse_args(argv)

    import shutil
    import tempfile

    import onnxruntime as ort

    wishes = [
        [p.strip() for p in w.split(",") if p.strip()] for w in args.providers or ["openvino"]
    ]
    scratch = None
    root = args.root
    if args.with_mlp:  # a scratch copy: the probe model is never registered in the real root
        scratch = tempfile.TemporaryDirectory()
        root = Path(scratch.name) / "artifacts"
        shutil.copytree(args.root, root)
    registry = ModelRegistry(root, sessions=SessionCache())
    model_ids = list(args.model or [m for m in registry.model_ids()])
    if args.with_mlp:
        model_ids.append(probe_mlp(registry))
    print(f"onnxruntime {ort.__version__}; available: {', '.join(available_providers())}")
    cases: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for model_id in model_ids:
        if registry.manifest(model_id).kind != "onnx":
            continue
        x, _ = registry.holdout(model_id)
        x = np.ascontiguousarray(x[: args.rows], dtype=np.float32)
        base = run_case(registry, model_id, [], x)
        cpu_scores = base["scores"]
        for case in (base, *(run_case(registry, model_id, w, x) for w in wishes)):
            case["max_abs_diff_vs_cpu"] = float(np.max(np.abs(case["scores"] - cpu_scores)))
            label = f"{model_id}|{'+'.join(case['requested'])}"
            arrays[label] = case.pop("scores")
            cases.append(case)
            if case["max_abs_diff_vs_cpu"] > args.atol:
                bad.append(f"{label}: max |diff| {case['max_abs_diff_vs_cpu']:.2e}")
            print(
                f"{case['model']:<16} {'+'.join(case['requested']):<22} "
                f"session {','.join(case['session_providers'] or []):<48} "
                f"nodes {json.dumps(case['nodes_by_provider']):<40} "
                f"p50 {case['single_p50_us']:>7.1f} µs  p99 {case['single_p99_us']:>7.1f} µs  "
                f"b64 {case['batch64_rows_per_s']:>10,} rows/s  "
                f"max|Δ| {case['max_abs_diff_vs_cpu']:.2e}"
            )
    report = {
        "onnxruntime": ort.__version__,
        "available": available_providers(),
        "fallbacks": {f"{p}:{why}": n for (p, why), n in FALLBACKS.items()},
        "cases": cases,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.scores:
        np.savez(args.scores, **arrays)  # type: ignore[arg-type]  # numpy stubs: str keys
    if scratch is not None:
        scratch.cleanup()
    if report["fallbacks"]:
        print(f"fallbacks: {report['fallbacks']}")
    if args.require:
        for wish in wishes:
            want = ALIASES.get(wish[0].lower(), wish[0])
            if not any(c["nodes_by_provider"].get(want) for c in cases):
                bad.append(f"{want} ran no node of any model (not installed, or no device?)")
    if args.check and bad:
        print("check failed:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
