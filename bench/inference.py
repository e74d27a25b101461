"""Inference engine bench (issue #14): calls/s and p50/p99 per backend kind, and the engine's
overhead over a bare ONNX call.

    python -m bench.inference [--quick] [--only kinds|providers]

Kinds, each on the promoted `failure-gbm` of a fresh copy of the shipped registry:

- `bare`: `LoadedModel.predict` on the caller's thread (what the worker does without the engine);
- `engine-local`: `InferenceEngine.infer` over one in-process `LocalBackend` (its own thread);
- `adapter`: `EngineFailureModel.predict`, the worker's path with the engine (a synchronous
  call handed to the engine's loop thread, then to the replica's thread);
- `oip`: `InferenceEngine.infer` over a `RemoteBackend` to an `edgeml serve` process started here
  (loopback: this bench has one machine; binary tensors, keep-alive);
- `oip-concurrent` / `oip-batched`: 64 concurrent single-row callers, 50 calls each, of the
  `RemoteBackend` itself, without and with `BatchingBackend(window_s=0.002)` (calls/s counts
  answered calls; the server's 2 replicas refuse calls beyond `max_pending` = 8 queued each,
  which without batching 64 callers exceed).

Single-caller kinds run sequentially, so calls/s is 1 / mean latency; rows 1, 64 and 500 (the
worker's batch maximum). The overhead line is engine p50 minus bare p50 at the same rows.

Per provider (`--only providers` runs just this part): `InferenceEngine.infer` over one
in-process replica built by `onnx_replicas(..., providers=[p])` for each execution provider
this onnxruntime build has (CPU with the plain wheel; OpenVINO in `.cache/venv-openvino`,
CUDA / TensorRT with `onnxruntime-gpu`), with what the session runs on, graph nodes per
provider (one profiled run: a provider can be in the session and run no node) and max |score -
CPU score| over 500 holdout rows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.models.inference import (
    Backend,
    BackendError,
    BatchingBackend,
    EngineFailureModel,
    InferenceEngine,
    RemoteBackend,
    TaskConfig,
    onnx_replicas,
)
from edgeml.models.inference.providers import (
    ALIASES,
    KNOWN,
    available_providers,
    node_placement,
)
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry

ROWS = (1, 64, 500)


def _stats(samples_s: list[float], wall_s: float, calls: int) -> dict[str, float]:
    # not bench.common.percentiles: it rounds to 10 µs, and these calls take 5-1000 µs
    p50, p99 = np.percentile(np.asarray(samples_s) * 1e3, [50, 99]).tolist()
    return {"calls_per_s": round(calls / wall_s, 1), "p50_ms": round(p50, 4),
            "p99_ms": round(p99, 4)}  # fmt: skip


def _sync(fn: Callable[[], Any], n: int) -> dict[str, float]:
    for _ in range(min(50, n)):
        fn()  # warm-up: first calls allocate
    samples = []
    began = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return _stats(samples, time.perf_counter() - began, n)


async def _async(fn: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    for _ in range(min(50, n)):
        await fn()
    samples = []
    began = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t)
    return _stats(samples, time.perf_counter() - began, n)


async def _concurrent(backend: Backend, x: np.ndarray, clients: int,
                      each: int) -> dict[str, float]:  # fmt: skip
    """`clients` callers of `backend` itself (no engine: its breaker would stop the calls a
    server refuses, and the point is to count them)."""
    samples: list[float] = []
    failed = 0

    async def client() -> None:
        nonlocal failed
        for _ in range(each):
            t = time.perf_counter()
            try:
                await backend.infer({"input": x})
            except BackendError:  # e.g. the server's replicas refusing (max_pending)
                failed += 1
                continue
            samples.append(time.perf_counter() - t)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    stats = _stats(samples, time.perf_counter() - began, len(samples))
    stats["failed"] = float(failed)
    return stats


def _start_serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    # here, not at the top: bench.common needs the app's settings (pydantic), which a side
    # venv with only the provider wheel and the core (`--only providers`) does not have
    from bench.common import ROOT, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env["EDGEML_HOME"] = str(root.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeml.app", "serve", "--port", str(port), "--root", str(root),
         "--replicas", "2", "--probe-interval-s", "0"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("edgeml serve did not start")
        time.sleep(0.1)


async def _oip(url: str, xs: dict[int, np.ndarray], n: dict[int, int],
               clients: int, each: int) -> dict[str, dict[str, float]]:  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    config = TaskConfig(timeout_s=5.0, deadline_s=10.0, probe_interval_s=0)
    remote = await RemoteBackend.connect(url, "failure", limit=64)
    engine = InferenceEngine(seed=0)
    engine.add_task("t", [remote], config)
    for rows, x in xs.items():
        out[f"oip rows={rows}"] = await _async(partial(engine.infer, "t", {"input": x}), n[rows])
    await engine.close()
    one = xs[1]
    remote = await RemoteBackend.connect(url, "failure", limit=64)
    out["oip-concurrent rows=1"] = await _concurrent(remote, one, clients, each)
    batched = BatchingBackend(remote, window_s=0.002)
    out["oip-batched rows=1"] = await _concurrent(batched, one, clients, each)
    out["oip-batched rows=1"]["http_calls"] = float(batched.batches)
    await batched.close()
    return out


def run(quick: bool = False) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="edgeml-bench-inference-"))
    root = tmp / "artifacts"
    seed_registry(root)
    registry = ModelRegistry(root, sessions=SessionCache())
    model = registry.load(FAILURE_MODEL_ID)
    holdout, _ = registry.holdout(FAILURE_MODEL_ID)
    xs = {r: np.ascontiguousarray(holdout[:r], dtype=np.float32) for r in ROWS}
    scale = 5 if quick else 1
    n = {1: 5000 // scale, 64: 3000 // scale, 500: 1000 // scale}
    out: dict[str, dict[str, float]] = {}
    for rows, x in xs.items():
        out[f"bare rows={rows}"] = _sync(partial(model.predict, x), n[rows])

    async def local() -> None:
        engine = InferenceEngine(seed=0)
        engine.add_task("t", onnx_replicas(registry, FAILURE_MODEL_ID, 1),
                        TaskConfig(probe_interval_s=0))  # fmt: skip
        for rows, x in xs.items():
            out[f"engine-local rows={rows}"] = await _async(
                partial(engine.infer, "t", {"input": x}), n[rows]
            )
        await engine.close()

    asyncio.run(local())
    adapter = EngineFailureModel.from_registry(registry, replicas=1,
                                               config=TaskConfig(probe_interval_s=0))  # fmt: skip
    try:
        for rows, x in xs.items():
            out[f"adapter rows={rows}"] = _sync(partial(adapter.predict, x), n[rows])
    finally:
        adapter.close()
    proc, url = _start_serve(root)
    try:
        out.update(asyncio.run(_oip(url, xs, n, clients=64, each=50 // (2 if quick else 1))))
    finally:
        proc.terminate()
        proc.wait(10)
    return out


def short_names(providers: list[str]) -> str:
    """`["OpenVINOExecutionProvider", "CPUExecutionProvider"]` -> `openvino+cpu`."""
    short = {name: alias for alias, name in reversed(list(ALIASES.items()))}
    return "+".join(short.get(p, p) for p in providers)


def run_providers(quick: bool = False) -> list[dict[str, Any]]:
    """One engine-local case per execution provider this build has (module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="edgeml-bench-providers-"))
    seed_registry(tmp / "artifacts")
    registry = ModelRegistry(tmp / "artifacts", sessions=SessionCache())
    model_bytes = registry.model_bytes(FAILURE_MODEL_ID)
    holdout, _ = registry.holdout(FAILURE_MODEL_ID)
    x_check = np.ascontiguousarray(holdout[:500], dtype=np.float32)
    xs = {r: x_check[:r] for r in ROWS}
    scale = 5 if quick else 1
    n = {1: 5000 // scale, 64: 3000 // scale, 500: 1000 // scale}
    names = [p for p in available_providers() if p in KNOWN]
    names.sort(key=lambda p: p != "CPUExecutionProvider")  # CPU first: the reference
    cases: list[dict[str, Any]] = []
    cpu_scores: np.ndarray | None = None

    async def one(provider: str) -> dict[str, Any]:
        (backend,) = onnx_replicas(registry, FAILURE_MODEL_ID, 1, providers=[provider])
        engine = InferenceEngine(seed=0)
        engine.add_task("t", [backend], TaskConfig(probe_interval_s=0))
        scores = (await backend.infer({"input": x_check}))["score"]
        timings = {
            rows: await _async(partial(engine.infer, "t", {"input": x}), n[rows])
            for rows, x in xs.items()
        }
        await engine.close()
        return {
            "provider": short_names([provider]),
            "session": short_names(backend.metadata.get("providers") or []),
            "nodes": node_placement(model_bytes, [provider], x_check[:8]),
            "timings": timings,
            "scores": scores,
        }

    for provider in names:
        case = asyncio.run(one(provider))
        scores = case.pop("scores")
        cpu_scores = scores if cpu_scores is None else cpu_scores
        case["max_abs_diff_vs_cpu"] = float(np.max(np.abs(scores - cpu_scores)))
        cases.append(case)
    return cases


def providers_markdown(cases: list[dict[str, Any]]) -> str:
    lines = [
        f"Per execution provider ({FAILURE_MODEL_ID}, engine over one in-process replica):",
        "",
        "| provider | session runs on | nodes by provider | rows | calls/s | p50 ms | p99 ms "
        "| max \\|Δ\\| vs CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        nodes = ", ".join(f"{short_names([p])} {k}" for p, k in case["nodes"].items())
        for rows, r in case["timings"].items():
            lines.append(
                f"| {case['provider']} | {case['session']} | {nodes} | {rows} | "
                f"{r['calls_per_s']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                f"{case['max_abs_diff_vs_cpu']:.1e} |"
            )
    return "\n".join(lines)


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = ["| kind | rows | calls/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for key, r in results.items():
        kind, rows = key.split(" rows=")
        extra = f", {int(r['failed'])} not answered" if r.get("failed") else ""
        extra += f", {int(r['http_calls'])} HTTP calls" if "http_calls" in r else ""
        extra = f" ({extra[2:]})" if extra else ""
        lines.append(f"| {kind}{extra} | {rows} | {r['calls_per_s']:,.0f} | {r['p50_ms']:.3f} | "
                     f"{r['p99_ms']:.3f} |")  # fmt: skip
    lines.append("")
    for n in ROWS:
        bare = results[f"bare rows={n}"]["p50_ms"]
        for kind in ("engine-local", "adapter"):
            over = (results[f"{kind} rows={n}"]["p50_ms"] - bare) * 1e3
            lines.append(f"- {kind} overhead over bare ONNX at {n} rows: {over:.0f} µs p50")
    return "\n".join(lines)


def main() -> None:
    logging.getLogger("edgeml").setLevel(logging.ERROR)  # breaker lines of the overload case
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the calls")
    parser.add_argument(
        "--only", choices=("kinds", "providers"), help="one part (default: both, kinds first)"
    )
    args = parser.parse_args()
    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = run(quick=args.quick) if args.only != "providers" else None
    cases = run_providers(quick=args.quick) if args.only != "kinds" else None
    flags = (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    print(
        f"python -m bench.inference{flags} | {began} | "
        f"{platform.machine()} {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}"
    )
    if results is not None:
        print(markdown(results))
    if cases is not None:
        print(("\n" if results is not None else "") + providers_markdown(cases))


if __name__ == "__main__":
    main()
