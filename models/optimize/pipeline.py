"""`optimize()`: run the requested steps on a registered model, measuring each, and keep what pays.

Order: `trees` | `prune` (model-level), then the number format (`dynamic`, `static`, `fp16`:
each measured, one kept), then `graph` (ORT offline optimization), then `compress` (zstd).
Every candidate is scrubbed of denormal weights and measured on the same rows: single-sample
p50/p99, batch-of-64 throughput, session creation, quality on the held-out rows. What is kept
is decided by those figures (`objective`), and the whole result is checked against the quality
budget before anything is registered.
"""

from __future__ import annotations

import copy
import functools
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgeml.models.latency import Timing, machine_label, measure
from edgeml.models.manifest import ModelManifest
from edgeml.models.optimize import transforms
from edgeml.models.optimize.export import check_parity, export_sklearn, scrub_denormals
from edgeml.models.optimize.report import OptimizationReport, ProviderResult, StepResult
from edgeml.models.registry import ModelRegistry, score_output_name, session_options, to_scores

if TYPE_CHECKING:
    from edgeml.models.inference.providers import ProviderSpec

__all__ = [
    "DEFAULT_STEPS",
    "OBJECTIVES",
    "STEPS",
    "SourceModel",
    "optimize",
    "parse_steps",
]

STEPS = ("trees", "prune", "dynamic", "static", "fp16", "graph", "compress")
DEFAULT_STEPS = STEPS
NUMBER_FORMATS = ("dynamic", "static", "fp16")
OBJECTIVES = ("balanced", "size", "latency")
Objective = Literal["balanced", "size", "latency"]
SLOWER_TOLERANCE = 1.10  # a candidate up to 10 % slower at p50 counts as "not slower" (noise)
CPU = "CPUExecutionProvider"


@dataclass(slots=True)
class SourceModel:
    """The sklearn estimator a registered ONNX model was exported from, with its training rows.

    Optional: given to `optimize(source=...)` by a trainer (or the bench), it lets `prune`
    fine-tune the surviving weights and re-export instead of only zeroing ONNX weights.
    """

    estimator: Any
    x_train: np.ndarray
    y_train: np.ndarray
    fine_tune_epochs: int = 8


def parse_steps(text: str | Sequence[str]) -> tuple[str, ...]:
    """`"dynamic,static"` -> ("dynamic", "static") in canonical order; unknown names refused."""
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    return tuple(s for s in STEPS if s in names)


@dataclass(slots=True)
class _Candidate:
    step: str
    model_bytes: bytes
    result: StepResult
    compressed: bool = False


@dataclass(slots=True)
class _Bench:
    """Measures candidates on fixed rows against the fp32 baseline."""

    task: str
    x_eval: np.ndarray
    y_eval: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    threads: int
    timing_s: float
    rounds: int
    base_scores: np.ndarray | None = None
    base_primary: float | None = None
    primary: str = "auc"
    notes: list[str] = field(default_factory=list)
    providers: tuple[str, ...] = (CPU,)  # resolved ORT names; CPU's figures decide

    def session(self, model_bytes: bytes, provider: str = CPU) -> tuple[Any, float]:
        """A session on `provider` (CPU closing the list, `provider_session`) and its creation
        time in ms: the faster of two creations (the first pays one-time lazy init)."""
        from edgeml.models.inference.providers import provider_session, resolve

        choice = resolve([provider], available=[provider, CPU])
        best = float("inf")
        session: Any = None
        for _ in range(2):
            start = time.perf_counter()
            session, _ = provider_session(
                model_bytes, choice, options=session_options(self.threads)
            )
            best = min(best, (time.perf_counter() - start) * 1000.0)
        return session, best

    def predictor(self, session: Any) -> Callable[[np.ndarray], np.ndarray]:
        input_name = session.get_inputs()[0].name
        output = score_output_name(session, self.task)
        task = self.task

        def predict(x: np.ndarray) -> np.ndarray:
            return to_scores(session.run([output], {input_name: x})[0], task)

        return predict

    def quality(self, scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

        if self.task == "classifier":
            labels = (scores >= 0.5).astype(int)
            return {
                "auc": float(roc_auc_score(y, scores)),
                "f1": float(f1_score(y, labels)),
                "accuracy": float(accuracy_score(y, labels)),
            }
        return {"rmse": float(np.sqrt(np.mean((scores - y.astype(np.float64)) ** 2)))}

    def loss(self, quality: dict[str, float]) -> float:
        base = self.base_primary or 0.0
        if self.primary == "auc":
            return base - quality["auc"]
        return (quality["rmse"] - base) / base if base else quality["rmse"]

    def calib_loss(self, model_bytes: bytes, reference: float) -> float:
        session, _ = self.session(model_bytes)
        q = self.quality(self.predictor(session)(self.x_calib), self.y_calib)
        if self.primary == "auc":
            return reference - q["auc"]
        return (q["rmse"] - reference) / reference if reference else q["rmse"]

    def timing(self, predict: Callable[[np.ndarray], object]) -> Timing:
        row = self.x_eval[:1]
        start = time.perf_counter()
        for _ in range(20):
            predict(row)
        per_call = max((time.perf_counter() - start) / 20, 1e-6)
        calls = int(min(max(self.timing_s / per_call, 200), 5000))
        runs = [
            measure(predict, self.x_eval[:512], single_calls=calls, batch_calls=max(calls // 40, 5))
            for _ in range(self.rounds)
        ]
        return Timing(
            p50_us=min(r.p50_us for r in runs),
            p99_us=min(r.p99_us for r in runs),
            batch64_per_s=max(r.batch64_per_s for r in runs),
        )

    def evaluate(self, step: str, model_bytes: bytes, applied_to: str | None) -> StepResult:
        session, session_ms = self.session(model_bytes)
        predict = self.predictor(session)
        scores = predict(self.x_eval)
        quality = self.quality(scores, self.y_eval)
        if self.base_scores is None:
            self.base_scores = scores
            self.base_primary = quality[self.primary]
        timing = self.timing(predict)
        agreement = None
        if self.task == "classifier":
            agreement = float(np.mean((scores >= 0.5) == (self.base_scores >= 0.5)))
        result = StepResult(
            step=step,
            status="kept",
            applied_to=applied_to,
            size_bytes=len(model_bytes),
            p50_us=round(timing.p50_us, 2),
            p99_us=round(timing.p99_us, 2),
            batch64_per_s=round(timing.batch64_per_s, 0),
            session_ms=round(session_ms, 2),
            quality={k: round(v, 6) for k, v in quality.items()},
            quality_delta=round(quality[self.primary] - (self.base_primary or 0.0), 6),
            max_abs_diff=float(np.abs(scores - self.base_scores).max()),
            label_agreement=agreement,
        )
        for provider in self.providers:
            if provider == CPU:  # the figures above
                result.providers[short_name(CPU)] = ProviderResult(
                    provider=CPU,
                    session_providers=[CPU],
                    p50_us=result.p50_us,
                    p99_us=result.p99_us,
                    batch64_per_s=result.batch64_per_s,
                    session_ms=result.session_ms,
                    quality_delta=result.quality_delta,
                    max_abs_diff=result.max_abs_diff,
                )
            else:
                result.providers[short_name(provider)] = self.on_provider(provider, model_bytes)
        return result

    def on_provider(self, provider: str, model_bytes: bytes) -> ProviderResult:
        """The candidate's latency and score delta on a session on [`provider`, CPU]; deltas
        are against the fp32 baseline on CPU, so they hold the provider's numeric drift too."""
        session, session_ms = self.session(model_bytes, provider)
        took = list(session.get_providers())
        if provider not in took:  # refused the graph or did not start (logged, counted)
            return ProviderResult(
                provider, took, note=f"fell back: the session runs on {', '.join(took)}"
            )
        predict = self.predictor(session)
        scores = predict(self.x_eval)
        quality = self.quality(scores, self.y_eval)
        timing = self.timing(predict)
        assert self.base_scores is not None
        return ProviderResult(
            provider=provider,
            session_providers=took,
            p50_us=round(timing.p50_us, 2),
            p99_us=round(timing.p99_us, 2),
            batch64_per_s=round(timing.batch64_per_s, 0),
            session_ms=round(session_ms, 2),
            quality_delta=round(quality[self.primary] - (self.base_primary or 0.0), 6),
            max_abs_diff=float(np.abs(scores - self.base_scores).max()),
        )


def short_name(provider: str) -> str:
    """`CPUExecutionProvider` -> `cpu` (the first alias of `models.inference.providers`)."""
    from edgeml.models.inference.providers import ALIASES

    return next((alias for alias, name in ALIASES.items() if name == provider), provider)


def _split(x: np.ndarray, y: np.ndarray, notes: list[str]) -> tuple[np.ndarray, ...]:
    n = len(x)
    if n >= 1000:
        half = n // 2
        return x[:half], y[:half], x[half:], y[half:]
    notes.append(f"holdout has {n} rows (< 1000): calibration rows overlap the evaluation rows")
    k = min(500, n)
    return x[:k], y[:k], x, y


def optimize(
    registry: ModelRegistry,
    model_id: str,
    version: str | None = None,
    *,
    steps: Sequence[str] = DEFAULT_STEPS,
    budget_auc: float = 0.01,
    budget_rmse: float = 0.05,
    objective: Objective = "balanced",
    sparsity: float = 0.5,
    threads: int = 1,
    register: bool = True,
    source: SourceModel | None = None,
    timing_s: float = 0.3,
    rounds: int = 3,
    providers: Sequence[ProviderSpec] | None = None,
) -> OptimizationReport:
    """Optimize `model_id@version` (None = promoted) and return the measured report.

    Quality is measured on the second half of the trainer's `holdout.npz` (the first half
    calibrates static int8 and picks the tree count), so nothing is tuned on the rows it is
    judged on. The final model is registered (as a child version, same holdout) only when
    `register` is set, something was kept, and its loss is within budget: `budget_auc` (AUC
    points lost, classifiers) or `budget_rmse` (relative RMSE increase, regressors).
    `report.within_budget` and `report.budget_message()` say how it went.

    `providers` (an ordered execution-provider wish list, `models.inference.providers`;
    default CPU) adds one latency / score-delta entry per resolved provider to every measured
    step (`StepResult.providers`), each on a session on [provider, CPU]. What is kept is
    decided on CPU's figures; a wished provider this build lacks is logged, counted and listed
    in `report.provider_fallbacks`, never an error. Unknown names raise ValueError.
    """
    from edgeml.models.inference.providers import available_providers, resolve

    steps = parse_steps(steps)
    have = available_providers()
    choice = resolve(providers or [CPU], available=have)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    manifest = registry.manifest(model_id, version)
    if manifest.kind != "onnx":
        raise transforms.NotApplicable(f"{manifest.ref} is a {manifest.kind} model, not ONNX")
    x, y = registry.holdout(model_id, manifest.version)
    notes: list[str] = []
    x_calib, y_calib, x_eval, y_eval = _split(x, y, notes)
    primary = "auc" if manifest.task == "classifier" else "rmse"
    budget = budget_auc if primary == "auc" else budget_rmse
    bench = _Bench(
        manifest.task, x_eval, y_eval, x_calib, y_calib, threads, timing_s, rounds,
        primary=primary, notes=notes, providers=choice.names,
    )  # fmt: skip

    base_bytes = transforms.scrub(registry.model_bytes(model_id, manifest.version))
    base = _Candidate("fp32", base_bytes, bench.evaluate("fp32", base_bytes, None))
    base.result.status = "baseline"
    base.result.note = "registered model, denormals scrubbed"
    results: list[StepResult] = [base.result]
    current = base
    family = transforms.model_family(base_bytes)

    def attempt(step: str, make: Callable[[], bytes]) -> _Candidate | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                new_bytes = transforms.scrub(make())
        except transforms.NotApplicable as exc:
            results.append(StepResult(step, "skipped", note=str(exc)))
            return None
        result = bench.evaluate(step, new_bytes, current.step)
        results.append(result)
        return _Candidate(step, new_bytes, result)

    if "trees" in steps:
        found = _compact_trees(bench, current, budget, family, source)
        if isinstance(found, StepResult):
            results.append(found)
        else:
            compacted, note = found
            cand = attempt("trees", lambda: compacted)
            if cand is not None:
                cand.result.note = note
                current = cand

    if "prune" in steps:
        cand = attempt("prune", lambda: _prune(current.model_bytes, sparsity, source, bench))
        if cand is not None:
            cand.result.note = f"{sparsity:.0%} of weights zeroed" + (
                f", fine-tuned {source.fine_tune_epochs} epochs"
                if source is not None and _can_fine_tune(source)
                else ", no fine-tune (no source model given)"
            )
            current = cand

    formats = [s for s in steps if s in NUMBER_FORMATS]
    if formats:
        makers: dict[str, Callable[[bytes], bytes]] = {
            "dynamic": transforms.quantize_dynamic_int8,
            "static": lambda b: transforms.quantize_static_qdq(b, x_calib),
            "fp16": transforms.convert_float16,
        }
        start = current
        tried: list[_Candidate] = []
        for name in formats:
            make = makers[name]
            cand = attempt(name, functools.partial(make, start.model_bytes))
            if cand is not None:
                tried.append(cand)
        current = _choose_format(start, tried, bench, budget, objective)

    if "graph" in steps:
        prev = current
        cand = attempt("graph", lambda: transforms.optimize_graph(prev.model_bytes))
        if cand is not None:
            assert cand.result.p50_us is not None and prev.result.p50_us is not None
            note = (
                f"ORT extended-level graph saved; session {prev.result.session_ms} -> "
                f"{cand.result.session_ms} ms"
            )
            grown = (cand.result.size_bytes or 0) / max(prev.result.size_bytes or 1, 1)
            slower = _slower(cand.result, prev.result, prev.step)
            if slower:
                cand.result.status, cand.result.note = "rejected", f"{note}; {slower}"
            elif objective != "latency" and grown > 1.05:
                cand.result.status = "rejected"
                cand.result.note = note + f"; {grown:.2f}x larger (folds {prev.step} back)"
            else:
                cand.result.note = note
                current = cand

    if "compress" in steps:
        current = _compress(current)
        results.append(current.result)

    report = OptimizationReport(
        model=manifest.ref,
        task=manifest.task,
        primary=primary,
        steps=results,
        final_step=current.step,
        budget=budget,
        threads=threads,
        machine=machine_label(),
        eval_rows=len(x_eval),
        calibration_rows=len(x_calib),
        notes=notes,
        providers=[short_name(p) for p in choice.names],
        provider_fallbacks={
            short_name(p): f"{p} is not in this onnxruntime build ({', '.join(have)}): "
            f"no {short_name(p)} figures"
            for p in choice.missing
        },
    )
    for result in results:  # present, but a session did not take it (logged, counted)
        for name, entry in result.providers.items():
            if entry.p50_us is None:
                why = f"{entry.provider} {entry.note} (first at step {result.step})"
                report.provider_fallbacks.setdefault(name, why)
    if register and current.step != "fp32" and report.within_budget:
        registered = _register(registry, manifest, current, report)
        report.registered = registered.ref
    return report


def _compact_trees(
    bench: _Bench,
    current: _Candidate,
    budget: float,
    family: str,
    source: SourceModel | None,
) -> tuple[bytes, str] | StepResult:
    """The smallest ensemble whose calibration-row loss stays within half the budget.

    Without a source model: the first K trees of the ONNX ensemble (forests reweighted). With
    one (sklearn GradientBoosting*/RandomForest*): refit with K trees (boosting: learning rate
    scaled by N/K, capped at 1) and re-export, which keeps boosting accuracy at far fewer trees.
    """
    if family != "trees":
        return StepResult("trees", "skipped", note="trees: not a tree ensemble")
    info = transforms.TreeEnsemble.of(current.model_bytes)
    session, _ = bench.session(current.model_bytes)
    reference = bench.quality(bench.predictor(session)(bench.x_calib), bench.y_calib)
    ref = reference[bench.primary]
    n = info.n_trees
    fractions = (1 / 16, 1 / 10, 1 / 8, 1 / 6, 1 / 5, 1 / 4, 1 / 3, 1 / 2)
    options = sorted({max(1, round(n * f)) for f in fractions} - {n})
    refit = source is not None and hasattr(source.estimator, "n_estimators")
    for keep in options:
        if keep >= n:
            break
        if refit:
            assert source is not None
            how = "refit"
            candidate = _refit_trees(source, keep, bench)
        else:
            how = "first" if info.additive else "reweighted"
            candidate = transforms.compact_trees(current.model_bytes, keep)
        loss = bench.calib_loss(candidate, ref)
        if loss <= budget / 2:
            return candidate, f"{keep}/{n} trees ({how}); calibration loss {loss:+.4f}"
    return StepResult(
        "trees",
        "rejected",
        note=f"no ensemble smaller than {n} trees stays within budget/2 on the calibration rows",
    )


def _refit_trees(source: SourceModel, keep: int, bench: _Bench) -> bytes:
    from sklearn.base import clone

    est = source.estimator
    params: dict[str, Any] = {"n_estimators": keep}
    if hasattr(est, "learning_rate"):
        params["learning_rate"] = min(1.0, est.learning_rate * est.n_estimators / keep)
    small = clone(est).set_params(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small.fit(np.asarray(source.x_train, dtype=np.float32), source.y_train)
    model_bytes = export_sklearn(small, bench.x_eval.shape[1])
    check_parity(small, model_bytes, bench.x_eval[:256])
    return transforms.compact_trees(model_bytes, keep)  # drops default attributes


def _can_fine_tune(source: SourceModel) -> bool:
    est = source.estimator
    return hasattr(est, "coefs_") and getattr(est, "solver", "") in ("adam", "sgd")


def _prune(model_bytes: bytes, sparsity: float, source: SourceModel | None, bench: _Bench) -> bytes:
    if source is None or not hasattr(source.estimator, "coefs_"):
        return transforms.prune_magnitude(model_bytes, sparsity)
    est = copy.deepcopy(source.estimator)
    width = np.asarray(source.x_train).shape[1]
    exported = export_sklearn(copy.deepcopy(est), width)
    check_parity(est, exported, bench.x_eval[:256], atol=1e-4)
    base = bench.base_scores
    ref_session, _ = bench.session(exported)
    if base is not None and not np.allclose(
        bench.predictor(ref_session)(bench.x_eval), base, atol=1e-4
    ):
        raise ValueError("the source model given to optimize() is not the registered model")
    masks = [transforms.magnitude_mask(w, sparsity) for w in est.coefs_]
    for w, m in zip(est.coefs_, masks, strict=True):
        w *= m
    if _can_fine_tune(source):
        x_train = np.asarray(source.x_train, dtype=np.float32)
        for _ in range(source.fine_tune_epochs):
            est.partial_fit(x_train, source.y_train)
            for w, m in zip(est.coefs_, masks, strict=True):
                w *= m
    scrub_denormals(est)
    pruned = export_sklearn(est, width)
    check_parity(est, pruned, bench.x_eval[:256])
    return pruned


def _slower(new: StepResult, old: StepResult, old_name: str) -> str | None:
    """Why `new` counts as slower than `old` (single-sample p50 or batch-64), else None."""
    p50_new, p50_old = new.p50_us or 0.0, old.p50_us or 0.0
    if p50_new > p50_old * SLOWER_TOLERANCE:
        return f"{p50_new / p50_old:.2f}x slower p50 than {old_name} ({p50_new} vs {p50_old} µs)"
    per_s_new, per_s_old = new.batch64_per_s or 0.0, old.batch64_per_s or 0.0
    if per_s_new * SLOWER_TOLERANCE < per_s_old:
        return f"batch-64 throughput {per_s_old / max(per_s_new, 1e-9):.2f}x lower than {old_name}"
    return None


def _choose_format(
    start: _Candidate,
    tried: list[_Candidate],
    bench: _Bench,
    budget: float,
    objective: Objective,
) -> _Candidate:
    base = start.result
    assert base.p50_us is not None and base.size_bytes is not None
    eligible: list[_Candidate] = []
    for cand in tried:
        r = cand.result
        assert r.p50_us is not None and r.size_bytes is not None
        loss = bench.loss(r.quality)
        speed = base.p50_us / r.p50_us
        if loss > budget:
            r.status, r.note = "rejected", f"loses {loss:.4f} {bench.primary} (budget {budget})"
        elif objective == "balanced" and (why := _slower(r, base, start.step)):
            r.status, r.note = "rejected", why
        elif objective == "latency" and speed < 1.05:
            r.status, r.note = "rejected", f"not faster than {start.step} ({speed:.2f}x)"
        else:
            eligible.append(cand)
    if not eligible:
        return start
    key: Callable[[_Candidate], tuple[float, float]]
    if objective == "latency":
        key = lambda c: (c.result.p50_us or 0.0, float(c.result.size_bytes or 0))  # noqa: E731
    else:
        key = lambda c: (float(c.result.size_bytes or 0), c.result.p50_us or 0.0)  # noqa: E731
    best = min(eligible, key=key)
    for cand in eligible:
        r = cand.result
        assert r.p50_us is not None and r.size_bytes is not None
        summary = (
            f"{base.size_bytes / r.size_bytes:.2f}x smaller, "
            f"{base.p50_us / r.p50_us:.2f}x p50 vs {start.step}"
        )
        if cand is best:
            r.status, r.note = "kept", summary
        else:
            r.status, r.note = "rejected", summary + f"; {best.step} is better ({objective})"
    return best


def _compress(current: _Candidate) -> _Candidate:
    import zstandard

    packed = transforms.compress_zstd(current.model_bytes)
    unpack_ms = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        zstandard.ZstdDecompressor().decompress(packed)
        unpack_ms = min(unpack_ms, (time.perf_counter() - start) * 1000.0)
    prev = current.result
    result = StepResult(
        step="compress",
        status="kept",
        note=f"zstd-{transforms.ZSTD_LEVEL} of {current.step}; +{unpack_ms:.2f} ms to decompress",
        applied_to=current.step,
        size_bytes=len(packed),
        p50_us=prev.p50_us,
        p99_us=prev.p99_us,
        batch64_per_s=prev.batch64_per_s,
        session_ms=None if prev.session_ms is None else round(prev.session_ms + unpack_ms, 2),
        quality=dict(prev.quality),
        quality_delta=prev.quality_delta,
        max_abs_diff=prev.max_abs_diff,
        label_agreement=prev.label_agreement,
        providers=dict(prev.providers),
    )
    return _Candidate("compress", current.model_bytes, result, compressed=True)


def _register(
    registry: ModelRegistry,
    manifest: ModelManifest,
    final: _Candidate,
    report: OptimizationReport,
) -> ModelManifest:
    kept = [s.step for s in report.steps if s.status == "kept"]
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "model.onnx"
        artifact.write_bytes(final.model_bytes)
        return registry.register(
            manifest.model_id,
            artifact,
            kind="onnx",
            inputs=manifest.inputs,
            outputs=None,
            training_data=manifest.training_data,
            metrics={f"holdout_{k}": v for k, v in final.result.quality.items()},
            parent_version=manifest.version,
            task=manifest.task,
            holdout=registry.holdout_path(manifest.model_id, manifest.version),
            compress=final.compressed,
            optimization={
                "parent": manifest.ref,
                "steps": kept,
                "size_ratio": round(report.size_ratio, 3),
                "quality_delta": round(report.quality_delta, 6),
                "budget": report.budget,
            },
        )
