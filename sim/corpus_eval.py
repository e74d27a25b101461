"""The labelled corpus through the real `Scorer`, in process (`python -m edgeml.sim.corpus_eval`).

Each corpus series is one device (its name) with one metric, scored reading by reading in event
order by the same `Scorer` the worker runs (no broker: the broker path is tested to give the
same predictions, `tests/integration`). Two figures per split, both with the window scorer of
`sim.window_score`:

- **calibrated score**: the best single fleet-wide threshold on `anomaly_score` (standard
  profile), the same sweep the baselines get (`sim.baselines`);
- **deployed decisions**: the alerts the pipeline opened (an `open` alert is one alarm), with no
  threshold tuned on the labels, in all three profiles.

`--split holdout` is the part never tuned on; `--split tune` the part the defaults were chosen on.

`score_outputs` computes the same figures from what the real pipeline published (prediction and
alert JSON lines, e.g. `edgeml tail predictions --json --until-end`), for `edgeml evaluate
--corpus DIR`: a corpus written by `python -m edgeml.sim.corpus DIR` and replayed with
`edgeml replay DIR --device-from filename`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeml.models.scoring import Scorer
from edgeml.sim.baselines import BASELINES, baseline_score
from edgeml.sim.corpus import SPLITS, CorpusSeries, build_corpus, load_corpus
from edgeml.sim.window_score import best_threshold, score_alarms
from edgeml.topics.records import SensorReading

__all__ = ["SeriesRun", "evaluate_corpus", "run_series", "score_outputs"]


@dataclass(frozen=True, slots=True)
class SeriesRun:
    """One series through the Scorer: per-reading scores and flags, and the alert openings."""

    name: str
    ts: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray  # is_anomaly per reading
    opened: tuple[float, ...]  # event time of each `open` alert

    @property
    def flagged_fraction(self) -> float:
        return float(self.flagged.mean()) if self.flagged.size else 0.0


def run_series(series: CorpusSeries, scorer: Scorer, batch: int = 50) -> SeriesRun:
    """Score one series as one device, `batch` readings per `score` call (as a worker would)."""
    state = scorer.new_state(series.name)
    readings = [
        SensorReading(series.name, float(t), i, {series.metric: float(v)})
        for i, (t, v) in enumerate(zip(series.ts.tolist(), series.values.tolist(), strict=True))
    ]
    scores: list[float] = []
    flagged: list[bool] = []
    opened: list[float] = []
    for start in range(0, len(readings), batch):
        for scored in scorer.score(state, readings[start : start + batch]):
            scores.append(scored.anomaly_score)
            flagged.append(scored.is_anomaly)
            opened.extend(a.ts for a in scored.alerts if a.state == "open")
    return SeriesRun(
        series.name, series.ts, np.asarray(scores), np.asarray(flagged, dtype=bool), tuple(opened)
    )


def evaluate_corpus(
    series: Sequence[CorpusSeries],
    split: str | None,
    make_scorer: Callable[[], Scorer] = Scorer,
    baselines: bool = True,
) -> dict[str, object]:
    """Figures of one split (None = all): calibrated score, deployed decisions, baselines."""
    chosen = [s for s in series if split is None or s.split == split]
    runs = {s.name: run_series(s, make_scorer()) for s in chosen}
    return _report(chosen, runs, split, baselines)


def score_outputs(
    corpus_dir: Path,
    predictions: Iterable[dict[str, object]],
    alerts: Iterable[dict[str, object]],
    split: str | None = "holdout",
    baselines: bool = True,
) -> dict[str, object]:
    """The figures of `evaluate_corpus` from published predictions and alerts (JSON objects;
    device id = series name). A series with no prediction at all is an error (not replayed)."""
    chosen = load_corpus(corpus_dir, split)
    names = {s.name for s in chosen}
    by_device: dict[str, list[tuple[float, float, bool]]] = {n: [] for n in names}
    for p in predictions:
        device = str(p["device_id"])
        if device in names:
            ts, score = float(p["ts"]), float(p["anomaly_score"])  # type: ignore[arg-type]
            by_device[device].append((ts, score, bool(p.get("is_anomaly"))))
    opened: dict[str, list[float]] = {n: [] for n in names}
    for a in alerts:
        if a.get("state") == "open" and str(a["device_id"]) in names:
            opened[str(a["device_id"])].append(float(a["ts"]))  # type: ignore[arg-type]
    missing = sorted(n for n, rows in by_device.items() if not rows)
    if missing:
        raise ValueError(f"no predictions for {len(missing)} series, e.g. {missing[0]!r}")
    runs = {}
    for s in chosen:
        rows = sorted(by_device[s.name])
        runs[s.name] = SeriesRun(
            s.name,
            np.array([r[0] for r in rows]),
            np.array([r[1] for r in rows]),
            np.array([r[2] for r in rows], dtype=bool),
            tuple(sorted(opened[s.name])),
        )
    return _report(chosen, runs, split, baselines)


def _report(
    chosen: Sequence[CorpusSeries], runs: dict[str, SeriesRun], split: str | None, baselines: bool
) -> dict[str, object]:
    labels = {s.name: s.labels for s in chosen}
    calibrated = best_threshold({n: (r.ts, r.scores) for n, r in runs.items()}, labels)
    deployed = score_alarms({n: r.opened for n, r in runs.items()}, labels)
    out: dict[str, object] = {
        "split": split or "all",
        "series": len(chosen),
        "calibrated": {"score": round(calibrated.score, 1), "threshold": calibrated.threshold},
        "deployed": {p: round(f.score, 1) for p, f in deployed.items()},
        "deployed_detail": {
            p: {"detected": f.detected, "windows": f.windows, "false_alarms": f.false_positives}
            for p, f in deployed.items()
        },
        "flagged_fraction_max": round(max(r.flagged_fraction for r in runs.values()), 3),
        "alerts_per_series": {n: len(r.opened) for n, r in runs.items()},
    }
    if baselines:
        out["baselines"] = {
            name: round(baseline_score(chosen, name, None).score, 1) for name in BASELINES
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=[*SPLITS, "all"], default="holdout")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)
    split = None if args.split == "all" else args.split
    report = evaluate_corpus(build_corpus(args.seed), split, baselines=not args.no_baselines)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
