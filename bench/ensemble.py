"""Does an ensemble of the registered failure models beat its best member? (issue #14, item 4)

    python bench/ensemble.py                        # seeds 7,8 and 201-203, 20 devices x 5000 s
    python bench/ensemble.py --count 1500 --bootstrap 200     # quicker
    python bench/ensemble.py --json ensemble.json --cache .cache/ensemble

Members: every registered version of every classifier that takes `failure-gbm`'s inputs (today
`failure-gbm@1` and `@2`), plus, with `--train-member random_forest` (or `mlp`, `gbm`), a
member of another family trained here on the trainer's seeds 1-6 (not registered).

Data: the trainer's own dataset builder (`training.train_failure`: simulator -> real Scorer ->
the worker's feature rows, label = failure within 300 s, every negative kept) on

- the registry's held-out seeds 7 and 8 (never fitted on; fitted ensembles are cross-fitted:
  fitted on seed 7, scored on seed 8 and the other way round), and
- the untuned evaluation seeds 201-203 (used by no trainer, tuner or model selection; fitted
  ensembles are fitted on all of 7 and 8).

Aggregations: the engine's own `Aggregation` ("mean", "max", "vote") and two fitted ones:
`weighted` (mean with the member weight that maximises ROC AUC on the fit seeds, grid 0.05) and
`stacking` (logistic regression on the members' logits, fitted on the fit seeds), and the
engine's `stack` learned online (`models.inference.stacking.Stacker`), prequentially: one
stacker, started cold, goes through the held-out seeds and then the untuned ones in event-time
order, scoring each 10 s of rows before it learns anything newer, and learning a row's label
only once the horizon (300 s) has passed after it, as delayed labels arrive in the worker.
`online-stack` learns every row's label; `online-stack/30s` one row per device every 30 s of
event time, as the worker's label buffer keeps them (`ScorerConfig.label_every_s`).

Figures per data set: ROC AUC, PR AUC (average precision), precision / recall / F1 at 0.5, and
ΔAUC vs the best member with a 95 % interval from a block bootstrap (blocks of 250 s of event
time per seed, all devices: rows close in time are correlated, so a row bootstrap would be
too narrow). "Beats" means the interval lies above 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgeml.models.inference.aggregate import Aggregation, Method  # noqa: E402
from edgeml.models.inference.comparison import quality, roc_auc  # noqa: E402
from edgeml.models.inference.stacking import Stacker  # noqa: E402
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry, SessionCache  # noqa: E402

BLOCK_S = 250  # bootstrap block: 250 s of event time (1 reading/s/device)


def dataset(seed: int, devices: int, count: int, cache: Path | None) -> dict[str, np.ndarray]:
    """One seed's rows (x, y) and bootstrap block ids, built once and cached."""
    path = cache / f"seed{seed}-{devices}x{count}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    from edgeml.training.train_failure import build_dataset

    x, y, _ = build_dataset([seed], devices=devices, count=count, negative_stride=1)
    # rows come in event-time order, one per device per second: row // devices = second
    block = (np.arange(len(y)) // devices) // BLOCK_S
    data = {"x": x, "y": y.astype(np.int8), "block": block.astype(np.int32)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **data)  # type: ignore[arg-type]  # numpy stubs: str keys
    return data


def members(registry: ModelRegistry) -> list[Any]:
    inputs = registry.manifest(FAILURE_MODEL_ID).inputs
    out = []
    for m in registry.manifests():
        if m.task == "classifier" and m.inputs == inputs:
            out.append(registry.load(m.model_id, m.version))
    return out


class Trained:
    """A member trained here, not registered: one of the trainer's candidate families
    (`training.train_failure._candidates`) fitted on its training seeds with its weights."""

    def __init__(self, family: str, devices: int, count: int, cache: Path | None) -> None:
        from edgeml.training import train_failure as tf

        path = cache / f"train-{devices}x{count}.npz" if cache else None
        if path is not None and path.exists():
            with np.load(path) as npz:
                x, y = npz["x"], npz["y"]
        else:
            x, y, _ = tf.build_dataset(tf.TRAIN_SEEDS, devices=devices, count=count)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(path, x=x, y=y)
        model = tf._candidates()[family]
        if family == "mlp":  # MLPClassifier takes no sample_weight (as in the trainer)
            model.fit(x, y)
        else:
            model.fit(x, y, sample_weight=tf._weights(y))
        self.model = model
        self.ref = f"{family}(trained here)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


class Fitted:
    """The fitted aggregations, fitted on one set of member scores."""

    def __init__(self, scores: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
        if scores.shape[1] == 2:
            aucs = [roc_auc(y, w * scores[:, 0] + (1 - w) * scores[:, 1]) for w in grid]
            w0 = float(grid[int(np.argmax(aucs))])
            self.weights = np.array([w0, 1 - w0])
        else:  # more members: weights by each member's own AUC
            own = np.array([roc_auc(y, scores[:, i]) for i in range(scores.shape[1])])
            self.weights = own / own.sum()
        self.stack = LogisticRegression(C=1.0, max_iter=1000).fit(_logit(scores), y)

    def apply(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "weighted": scores @ self.weights,
            "stacking": self.stack.predict_proba(_logit(scores))[:, 1],
        }


HORIZON_S = 300  # the label: a failure within 300 s; known once 300 s have passed
STEP_S = 10  # prequential: score 10 s of rows, then learn the labels that became known


def online_stack(
    parts: list[dict[str, np.ndarray]], names: list[str], devices: int, label_every_s: int
) -> tuple[list[np.ndarray], Stacker]:
    """Prequential scores of one online stacker over `parts` (seeds, in order): each chunk of
    STEP_S seconds is scored before any label of it or later is learned; a row's label is
    learned once HORIZON_S seconds have passed after it (at a seed's end, all that remain)."""
    stacker = Stacker(names)
    out = []
    for part in parts:
        scores, y = part["scores"], part["y"].astype(bool)
        second = np.arange(len(y)) // devices  # event time: one row per device per second
        learnable = (second % label_every_s) == 0
        pred = np.empty(len(y))
        done = 0  # rows [0, done) have had their labels learned (those that are learnable)

        def learn(lo: int, hi: int, s: np.ndarray = scores, keep: np.ndarray = learnable,
                  yy: np.ndarray = y) -> None:  # fmt: skip
            rows = np.arange(lo, hi)
            rows = rows[keep[rows]]
            if len(rows):
                stacker.learn({n: s[rows, i] for i, n in enumerate(names)}, yy[rows])

        for start in range(0, int(second[-1]) + 1, STEP_S):
            lo = int(np.searchsorted(second, start))
            hi = int(np.searchsorted(second, start + STEP_S))
            pred[lo:hi] = stacker.combine({n: scores[lo:hi, i] for i, n in enumerate(names)})
            # labels known by the end of this chunk: rows older than the horizon
            known = int(np.searchsorted(second, start + STEP_S - HORIZON_S))
            if known > done:
                learn(done, known)
                done = known
        learn(done, len(y))
        out.append(pred)
    return out, stacker


def combined(scores: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    answers = {n: scores[:, i] for i, n in enumerate(names)}
    methods: tuple[Method, ...] = ("mean", "max", "vote")
    return {m: Aggregation(m).combine(answers) for m in methods}


def bootstrap_delta(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, blocks: np.ndarray, n: int, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of AUC(a) - AUC(b) over resampled blocks."""
    rng = np.random.default_rng(seed)
    ids = np.unique(blocks)
    rows = [np.flatnonzero(blocks == i) for i in ids]
    deltas = []
    for _ in range(n):
        pick = np.concatenate([rows[i] for i in rng.integers(0, len(ids), len(ids))])
        yy = y[pick]
        if yy.min() == yy.max():
            continue
        deltas.append(roc_auc(yy, a[pick]) - roc_auc(yy, b[pick]))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(lo), float(hi)


def evaluate(
    name: str,
    y: np.ndarray,
    blocks: np.ndarray,
    member_scores: dict[str, np.ndarray],
    ensembles: dict[str, np.ndarray],
    n_boot: int,
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for label, s in {**member_scores, **ensembles}.items():
        rows[label] = quality(y, s)
    best = max(member_scores, key=lambda m: rows[m]["roc_auc"])
    for label, s in ensembles.items():
        lo, hi = bootstrap_delta(y, s, member_scores[best], blocks, n_boot)
        rows[label]["delta_auc_vs_best"] = round(rows[label]["roc_auc"] - rows[best]["roc_auc"], 5)
        rows[label]["delta_ci95"] = [round(lo, 5), round(hi, 5)]
        rows[label]["beats_best"] = lo > 0
    return {"data": name, "rows": len(y), "positives": int(y.sum()), "best_member": best,
            "figures": rows}  # fmt: skip


def show(report: dict[str, Any]) -> None:
    print(f"\n{report['data']}: {report['rows']:,} rows, {report['positives']:,} positives; "
          f"best member {report['best_member']}")  # fmt: skip
    print(f"  {'':<28} {'ROC AUC':>8} {'PR AUC':>8} {'prec':>7} {'recall':>7} {'F1':>7}   "
          "ΔAUC vs best [95% CI]")  # fmt: skip
    for label, q in report["figures"].items():
        delta = ""
        if "delta_auc_vs_best" in q:
            lo, hi = q["delta_ci95"]
            delta = f"{q['delta_auc_vs_best']:+.4f} [{lo:+.4f}, {hi:+.4f}]" + (
                "  beats" if q["beats_best"] else ""
            )
        print(f"  {label:<28} {q['roc_auc']:>8.4f} {q['pr_auc']:>8.4f} {q['precision']:>7.4f} "
              f"{q['recall']:>7.4f} {q['f1']:>7.4f}   {delta}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "models" / "artifacts")
    parser.add_argument("--holdout-seeds", default="7,8")
    parser.add_argument("--eval-seeds", default="201,202,203")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=None, help="cache datasets here")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--train-member",
        action="append",
        choices=["gbm", "random_forest", "mlp", "hist_gbm"],
        help="also a member trained here on the training seeds (repeatable)",
    )
    args = parser.parse_args(argv)

    registry = ModelRegistry(args.root, sessions=SessionCache())
    models: list[Any] = members(registry)
    names = [m.manifest.ref for m in models]
    for family in args.train_member or ():
        print(f"training {family} on the trainer's seeds ...", flush=True)
        trained = Trained(family, args.devices, args.count, args.cache)
        models.append(trained)
        names.append(trained.ref)
    if len(models) < 2:
        print(f"only {len(models)} member(s) registered: nothing to ensemble")
        return 1
    print(f"members: {', '.join(names)}")

    def load(seeds: str) -> list[dict[str, np.ndarray]]:
        out = []
        for seed in (int(s) for s in seeds.split(",") if s.strip()):
            data = dataset(seed, args.devices, args.count, args.cache)
            data["scores"] = np.column_stack([m.predict(data["x"]) for m in models])
            data["block"] = data["block"] + seed * 100_000  # blocks never shared across seeds
            out.append(data)
        return out

    holdout, untuned = load(args.holdout_seeds), load(args.eval_seeds)
    online: dict[str, list[np.ndarray]] = {}
    stackers: dict[str, Stacker] = {}
    for label, every in (("online-stack", 1), ("online-stack/30s", 30)):
        online[label], stackers[label] = online_stack(
            [*holdout, *untuned], names, args.devices, every
        )
    n_hold = len(holdout)
    reports = []
    # held-out seeds: fitted aggregations cross-fitted between the seeds
    parts = []
    for i, part in enumerate(holdout):
        rest = [d for j, d in enumerate(holdout) if j != i]
        fit_s = np.concatenate([d["scores"] for d in rest])
        fit_y = np.concatenate([d["y"] for d in rest])
        parts.append(
            {**combined(part["scores"], names), **Fitted(fit_s, fit_y).apply(part["scores"])}
        )
    cat = {k: np.concatenate([d[k] for d in holdout]) for k in ("y", "block", "scores")}
    ens = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ens.update({k: np.concatenate(v[:n_hold]) for k, v in online.items()})
    member_scores = {n: cat["scores"][:, i] for i, n in enumerate(names)}
    reports.append(evaluate(f"held-out seeds {args.holdout_seeds} (cross-fitted)", cat["y"],
                            cat["block"], member_scores, ens, args.bootstrap))  # fmt: skip
    # untuned seeds: fitted on all the held-out seeds
    fitted = Fitted(cat["scores"], cat["y"])
    ev = {k: np.concatenate([d[k] for d in untuned]) for k in ("y", "block", "scores")}
    ens = {**combined(ev["scores"], names), **fitted.apply(ev["scores"])}
    ens.update({k: np.concatenate(v[n_hold:]) for k, v in online.items()})
    member_scores = {n: ev["scores"][:, i] for i, n in enumerate(names)}
    reports.append(evaluate(f"untuned seeds {args.eval_seeds}", ev["y"], ev["block"],
                            member_scores, ens, args.bootstrap))  # fmt: skip
    for report in reports:
        show(report)
    weights = dict(zip(names, fitted.weights.round(2).tolist(), strict=True))
    print(f"\nweighted mean fitted on all held-out rows: weights {weights}")
    for label, stacker in stackers.items():
        learned = {n: round(w, 3) for n, w in stacker.weights.items()}
        print(f"{label} at the end: weights {learned}, bias {stacker.bias:.3f}, "
              f"{stacker.labels_seen:,} labels ({stacker.positives:,} positive)")  # fmt: skip
    corr = np.corrcoef(ev["scores"].T)
    pairs = [f"{a} ~ {b}: {corr[i, j]:.4f}" for i, a in enumerate(names)
             for j, b in enumerate(names) if i < j]  # fmt: skip
    print(f"member score correlation on the untuned seeds: {'; '.join(pairs)}")
    if args.json:
        args.json.write_text(json.dumps({"members": names, "reports": reports}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
