"""Offline evaluation: simulator -> Scorer -> `sim.evaluation` metrics, no Kafka.

    python -m edgeml.training.evaluate_offline                 # untuned seeds 201 202 203
    python -m edgeml.training.evaluate_offline --seeds 101 --devices 20 --count 5000

Feeds every simulated reading (one device's reading at a time, in event-time order, as the
worker sees a live stream) and every maintenance event to one `Scorer`, collects predictions
and alerts, and prints the benchmark figures per seed and pooled. Seeds 101-103 were used to
tune the detector; 201-203 (the default) never were. Failure-model training uses seeds 1-8.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from edgeml.models.registry import load_promoted
from edgeml.models.scoring import Scorer, ScorerConfig
from edgeml.models.shipped import SHIPPED_ROOT
from edgeml.sim.evaluation import AlertRecord, PredictionRecord, evaluate, percentile
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import MaintenanceEvent

__all__ = ["RunResult", "main", "run_seed"]

EVAL_SEEDS = (201, 202, 203)
TUNING_SEEDS = (101, 102, 103)


@dataclass(slots=True)
class RunResult:
    """One seed's report (as `EvaluationReport.to_dict()`) plus what sim.evaluation lacks."""

    seed: int
    report: dict[str, Any]
    alerts_per_incident: float
    incidents_with_storm: int
    us_per_reading: float
    delays: list[float] = field(default_factory=list)
    lead_times: list[float] = field(default_factory=list)


def run_seed(
    seed: int,
    *,
    devices: int = 20,
    count: int = 5000,
    scorer: Scorer | None = None,
    horizon: float = 900.0,
    threshold: float = 0.5,
) -> RunResult:
    """Simulate one run, score it with a fresh `Scorer` and evaluate."""
    sim = simulate(SimConfig(devices=devices, count=count, seed=seed))
    scorer = scorer or Scorer(failure_model=load_promoted(SHIPPED_ROOT))
    states = {d.device_id: scorer.new_state(d.device_id) for d in sim.devices}
    predictions: list[PredictionRecord] = []
    alerts: list[AlertRecord] = []
    opens_by_device: dict[str, list[float]] = {}
    elapsed = 0.0
    clock = time.perf_counter
    for event in sim.events():
        if isinstance(event, MaintenanceEvent):
            scorer.learn_maintenance(event, states[event.device_id])
            continue
        start = clock()
        (scored,) = scorer.score(states[event.device_id], [event])
        elapsed += clock() - start
        predictions.append(
            PredictionRecord(
                event.device_id,
                event.seq,
                event.ts,
                scored.failure_prob or 0.0,
                scored.anomaly_score,
            )
        )
        for alert in scored.alerts:
            alerts.append(AlertRecord(alert.device_id, alert.ts, alert.state))
            if alert.state == "open":
                opens_by_device.setdefault(alert.device_id, []).append(alert.ts)
    truth = sim.ground_truth()
    report = evaluate(truth, predictions, alerts, horizon=horizon, threshold=threshold)
    per_incident: Counter[str] = Counter()
    for incident in truth.incidents:
        for ts in opens_by_device.get(incident.device_id, []):
            if incident.start_ts <= ts <= incident.end_ts + 30.0:
                per_incident[incident.incident_id] += 1
    detected = [n for n in per_incident.values() if n > 0]
    return RunResult(
        seed=seed,
        report=report.to_dict(),
        alerts_per_incident=sum(detected) / len(detected) if detected else 0.0,
        incidents_with_storm=sum(n > 1 for n in detected),
        us_per_reading=elapsed / max(1, len(predictions)) * 1e6,
        delays=report.delays,
        lead_times=report.lead_times,
    )


def _summary(results: Sequence[RunResult]) -> dict[str, Any]:
    reps = [r.report for r in results]
    incidents = sum(r["incidents"] for r in reps)
    detected = sum(r["detected"] for r in reps)
    opens = sum(r["alerts_open"] for r in reps)
    matched = sum((r["alert_precision"] or 0.0) * r["alerts_open"] for r in reps)
    failures = sum(r["failures"] for r in reps)
    predicted = sum(r["failures_predicted"] for r in reps)
    delays = [d for r in results for d in r.delays]
    leads = [d for r in results for d in r.lead_times]
    kinds: dict[str, list[float]] = {}
    for r in reps:
        for kind, value in r["incident_recall_by_kind"].items():
            kinds.setdefault(kind, []).append(value)
    return {
        "seeds": [r.seed for r in results],
        "incidents": incidents,
        "incident_recall": round(detected / incidents, 4) if incidents else None,
        "alert_precision": round(matched / opens, 4) if opens else None,
        "alerts_open": opens,
        "alerts_per_detected_incident": round(
            statistics.fmean(r.alerts_per_incident for r in results), 3
        ),
        "detection_delay_p50_s": percentile(delays, 50),
        "detection_delay_p95_s": percentile(delays, 95),
        "failures": failures,
        "failures_predicted_ratio": round(predicted / failures, 4) if failures else None,
        "lead_time_p50_s": percentile(leads, 50),
        "failure_alarm_precision": [r["failure_alarm_precision"] for r in reps],
        "recall_by_kind": {k: round(statistics.fmean(v), 3) for k, v in sorted(kinds.items())},
        "us_per_reading_single": round(statistics.fmean(r.us_per_reading for r in results), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EVAL_SEEDS))
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--horizon", type=float, default=900.0, help="failure alarm window (s)")
    parser.add_argument("--threshold", type=float, default=0.5, help="failure alarm threshold")
    parser.add_argument("--no-registry", action="store_true", help="no offline failure model")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--online-weight-max",
        type=float,
        default=ScorerConfig().online_weight_max,
        help="largest weight of the online failure model in failure_prob (0 = offline only)",
    )
    parser.add_argument(
        "--detector",
        choices=("residual", "hst", "both"),
        default="residual",
        help="anomaly detector (ablation; residual is the product default)",
    )
    args = parser.parse_args(argv)
    results = []
    for seed in args.seeds:
        config = ScorerConfig(detector_mode=args.detector, online_weight_max=args.online_weight_max)
        scorer = Scorer(
            config, failure_model=None if args.no_registry else load_promoted(SHIPPED_ROOT)
        )
        result = run_seed(
            seed,
            devices=args.devices,
            count=args.count,
            scorer=scorer,
            horizon=args.horizon,
            threshold=args.threshold,
        )
        rep = result.report
        print(
            f"seed {seed}: recall {rep['incident_recall']} precision {rep['alert_precision']} "
            f"delay p50 {rep['detection_delay_p50_s']} s, failures predicted "
            f"{rep['failures_predicted']}/{rep['failures']} (alarm precision "
            f"{rep['failure_alarm_precision']}), alerts/incident "
            f"{result.alerts_per_incident:.2f}, {result.us_per_reading:.1f} us/reading"
        )
        results.append(result)
    summary = _summary(results)
    summary["models"] = Scorer(
        failure_model=None if args.no_registry else load_promoted(SHIPPED_ROOT)
    ).model_ids
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
