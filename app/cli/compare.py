"""`edgeml models compare A B`: champion A vs challenger B, and `--promote` B when it is as good.

Two sources of evidence:

- held-out data (default): the union of both versions' registered `holdout.npz` sets (rows
  the trainer never fitted on), or `--sim-seeds 7,8`: fresh simulator runs of those seeds
  through the real Scorer, labelled like the trainer labels (`training.train_failure`);
- `--from-topic`: what shadow scoring published on `model-comparisons` (both models' scores
  on the live readings, and their call latencies), with delayed labels from the
  `maintenance-events` topic (a reading is positive when its device fails within the
  champion's horizon; rows too recent for their label to be known are left out).

The report: agreement (same side of `--threshold`, |difference|, correlation), quality per
model (ROC AUC, PR AUC, precision / recall / F1 at the threshold) and latency per model.
`--promote` promotes B (and announces it, as `edgeml models promote` does) only when B's ROC AUC
is at least A's minus `--max-auc-drop`; `--force` promotes without that check.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import typer

from edgeml.app.cli.options import BOOTSTRAP_OPTION, settings_with
from edgeml.app.errors import EdgeMLError
from edgeml.app.settings import Settings
from edgeml.models.inference.comparison import (
    agreement,
    label_from_failures,
    latency_summary,
    quality,
)
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry
from edgeml.topics.catalog import MAINTENANCE, MODEL_COMPARISONS
from edgeml.topics.records import ModelComparison

__all__ = ["CompareRefused", "add_to", "parse_ref"]


class CompareRefused(EdgeMLError):
    """The comparison cannot be made, or does not allow the promotion asked for."""


def parse_ref(text: str) -> tuple[str, str]:
    """`failure-gbm@2` -> ("failure-gbm", "2"); a bare `2` is a version of failure-gbm."""
    model_id, _, version = text.rpartition("@")
    if not version:
        raise typer.BadParameter(f"{text!r}: give MODEL@VERSION or a version of {FAILURE_MODEL_ID}")
    return (model_id or FAILURE_MODEL_ID), version


# -- held-out data ---------------------------------------------------------------------------


def holdout_union(
    registry: ModelRegistry, refs: list[tuple[str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Both versions' holdout rows, each row once (the sets overlap when drawn from one run)."""
    xs, ys = [], []
    for model_id, version in refs:
        x, y = registry.holdout(model_id, version)
        xs.append(x)
        ys.append(np.asarray(y, dtype=np.float32))
    joined = np.concatenate([np.column_stack([x, y]) for x, y in zip(xs, ys, strict=True)])
    unique = np.unique(joined, axis=0)
    return np.ascontiguousarray(unique[:, :-1], dtype=np.float32), unique[:, -1].astype(np.int8)


def sim_holdout(seeds: list[int], devices: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh held-out rows: the trainer's dataset builder on these seeds, every negative kept."""
    from edgeml.training.train_failure import build_dataset

    x, y, _ = build_dataset(seeds, devices=devices, count=count, negative_stride=1)
    return x, y


def compare_offline(
    registry: ModelRegistry,
    a: tuple[str, str],
    b: tuple[str, str],
    x: np.ndarray,
    y: np.ndarray,
    *,
    threshold: float,
    source: str,
) -> dict[str, Any]:
    """Scores of A and B on (x, y): agreement, quality each, latency each (this machine)."""
    from edgeml.models.latency import measure

    models = {}
    for role, (model_id, version) in (("a", a), ("b", b)):
        models[role] = registry.load(model_id, version)
    if models["a"].manifest.inputs != models["b"].manifest.inputs:
        raise CompareRefused(
            f"{models['a'].manifest.ref} and {models['b'].manifest.ref} take different inputs: "
            "they cannot score the same rows"
        )
    report: dict[str, Any] = {"source": source, "rows": len(y), "positives": int(y.sum())}
    scores = {role: m.predict(x) for role, m in models.items()}
    report["agreement"] = agreement(scores["a"], scores["b"], threshold)
    for role, m in models.items():
        timing = measure(m.predict, x[:500], single_calls=300, batch_calls=30)
        report[role] = {
            "ref": m.manifest.ref,
            "quality": quality(y, scores[role], threshold),
            "latency": {
                "single_p50_us": round(timing.p50_us, 1),
                "single_p99_us": round(timing.p99_us, 1),
                "batch64_rows_per_s": round(timing.batch64_per_s),
            },
        }
    return report


# -- the stream ------------------------------------------------------------------------------


async def _read_topic(settings: Settings, topic: str, timeout_s: float) -> list[bytes]:
    """Every value on `topic` up to its end offsets now (group-less, from the beginning)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    from edgeml.app.kafka_admin import BrokerUnavailable

    consumer = AIOKafkaConsumer(**settings.consumer_config(None))
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()  # a consumer that failed to start still holds its client
        raise BrokerUnavailable(f"cannot read {topic}: {exc or type(exc).__name__}") from None
    try:
        if topic not in await consumer.topics():
            raise CompareRefused(f"topic {topic} does not exist (no shadow scoring ran?)")
        consumer.subscribe([topic])  # no group: every partition is assigned at once
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise CompareRefused(f"reading {topic} took over {timeout_s:g} s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()


def _failures(values: list[bytes]) -> tuple[dict[str, list[float]], int]:
    failures: dict[str, list[float]] = {}
    bad = 0
    for value in values:
        try:
            event = orjson.loads(value)
            if event["kind"] == "failure":
                failures.setdefault(str(event["device_id"]), []).append(float(event["ts"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
    return failures, bad


def compare_stream(
    comparisons: list[ModelComparison],
    failures: dict[str, list[float]],
    *,
    champion: str,
    challenger: str,
    horizon_s: float,
    threshold: float,
) -> dict[str, Any]:
    """The report from shadow records of champion -> challenger and maintenance failures."""
    mine = [c for c in comparisons if c.champion == champion and c.challenger == challenger]
    if not mine:
        seen = sorted({f"{c.champion} -> {c.challenger}" for c in comparisons})
        raise CompareRefused(
            f"no comparisons of {champion} -> {challenger} on the topic "
            f"(found: {', '.join(seen) or 'none'})"
        )
    rows = [r for c in mine for r in c.rows if r.challenger is not None]
    failed = [c for c in mine if c.challenger_error is not None]
    report: dict[str, Any] = {
        "source": "model-comparisons topic",
        "batches": len(mine),
        "rows": len(rows),
        "challenger_failed_batches": len(failed),
    }
    if failed:
        report["challenger_last_error"] = failed[-1].challenger_error
    if not rows:
        raise CompareRefused(f"{challenger} answered no row of {len(mine)} shadow batches")
    a = np.array([r.champion for r in rows])
    b = np.array([float(r.challenger) for r in rows if r.challenger is not None])
    report["agreement"] = agreement(a, b, threshold)
    known_until = max(r.ts for r in rows)
    labels = label_from_failures(
        [(r.device_id, r.ts) for r in rows], failures, horizon_s, known_until=known_until
    )
    known = labels >= 0
    report["labelled_rows"] = int(known.sum())
    for role, ref, scores, secs in (
        ("a", champion, a, [c.champion_s for c in mine]),
        ("b", challenger, b, [c.challenger_s for c in mine]),
    ):
        timed = [(s, len(c.rows)) for s, c in zip(secs, mine, strict=True) if s is not None]
        entry: dict[str, Any] = {
            "ref": ref,
            "latency": latency_summary([s for s, _ in timed], [n for _, n in timed]),
        }
        if known.any() and 0 < labels[known].sum() < known.sum():
            entry["quality"] = quality(labels[known], scores[known], threshold)
        report[role] = entry
    return report


# -- output ----------------------------------------------------------------------------------


def _print(report: dict[str, Any]) -> None:
    ag = report["agreement"]
    typer.echo(f"{report['a']['ref']} (A, champion) vs {report['b']['ref']} (B, challenger)")
    typer.echo(f"  on {report['source']}: {report['rows']:,} rows")
    typer.echo(
        f"  agreement: {ag['agree']:.2%} on the same side of the threshold; |A-B| mean "
        f"{ag['mean_abs_diff']:.4f}, max {ag['max_abs_diff']:.4f}; pearson {ag['pearson']}; "
        f"alarm rate A {ag['alarm_rate_a']:.4f}, B {ag['alarm_rate_b']:.4f}"
    )
    for role in ("a", "b"):
        entry = report[role]
        q = entry.get("quality")
        if q is None:
            typer.echo(f"  {role.upper()} quality: no labels with both classes")
        else:
            typer.echo(
                f"  {role.upper()} quality: ROC AUC {q['roc_auc']:.4f}, PR AUC {q['pr_auc']:.4f}, "
                f"precision {q['precision']:.4f}, recall {q['recall']:.4f}, F1 {q['f1']:.4f} "
                f"({q['positives']:,} positives of {q['rows']:,})"
            )
        typer.echo(f"  {role.upper()} latency: {json.dumps(entry['latency'])}")


def _gate(report: dict[str, Any], max_drop: float) -> str | None:
    """Why B must not be promoted, or None when it may."""
    qa, qb = report["a"].get("quality"), report["b"].get("quality")
    if qa is None or qb is None:
        return "no labelled rows with both classes to judge quality on"
    if qb["roc_auc"] < qa["roc_auc"] - max_drop:
        return (
            f"B's ROC AUC {qb['roc_auc']:.4f} is below A's {qa['roc_auc']:.4f} by more than "
            f"{max_drop:g}"
        )
    return None


def add_to(models_cli: typer.Typer) -> None:
    from edgeml.app.cli.models import ROOT_OPTION, open_registry, promote_and_announce

    @models_cli.command()
    def compare(
        champion: str = typer.Argument(..., help="A: the current model, MODEL@VERSION."),
        challenger: str = typer.Argument(..., help="B: the candidate, MODEL@VERSION."),
        root: Path | None = ROOT_OPTION,
        sim_seeds: str | None = typer.Option(
            None, "--sim-seeds", help="Compare on fresh simulator runs of these seeds (7,8)."
        ),
        devices: int = typer.Option(20, "--devices", min=1, help="With --sim-seeds."),
        count: int = typer.Option(5000, "--count", min=100, help="With --sim-seeds."),
        from_topic: bool = typer.Option(
            False, "--from-topic", help="Compare on the shadow records of model-comparisons."
        ),
        timeout_s: float = typer.Option(30.0, "--timeout-s", min=1.0, help="Topic read limit."),
        threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        promote: bool = typer.Option(False, "--promote", help="Promote B if it is as good."),
        max_auc_drop: float = typer.Option(0.0, "--max-auc-drop", min=0.0),
        force: bool = typer.Option(False, "--force", help="With --promote: skip the check."),
        announce: bool = typer.Option(True, "--announce/--no-announce"),
        bootstrap: str | None = BOOTSTRAP_OPTION,
    ) -> None:
        """Champion A vs challenger B: agreement, quality on labels, latency; can promote B."""
        a, b = parse_ref(champion), parse_ref(challenger)
        if a[0] != b[0] and promote:
            raise typer.BadParameter("--promote needs two versions of one model", param_hint="B")
        settings = settings_with(bootstrap)
        registry = open_registry(root)
        if from_topic:
            manifest_a = registry.manifest(*a)
            manifest_b = registry.manifest(*b)
            comparisons, failures = _read_stream(settings, timeout_s)
            report = compare_stream(
                comparisons,
                failures,
                champion=manifest_a.ref,
                challenger=manifest_b.ref,
                horizon_s=float(manifest_a.metrics.get("horizon_s", 300.0)),
                threshold=threshold,
            )
        else:
            if sim_seeds:
                try:
                    seeds = [int(s) for s in sim_seeds.split(",") if s.strip()]
                except ValueError:
                    raise typer.BadParameter(
                        f"{sim_seeds!r}: comma-separated integers", param_hint="--sim-seeds"
                    ) from None
                x, y = sim_holdout(seeds, devices, count)
                source = f"simulator seeds {seeds} ({devices} devices x {count} readings)"
            else:
                x, y = holdout_union(registry, [a, b])
                source = "both versions' registered holdout sets"
            report = compare_offline(registry, a, b, x, y, threshold=threshold, source=source)
        if as_json:
            typer.echo(json.dumps(report))
        else:
            _print(report)
        if promote:
            reason = None if force else _gate(report, max_auc_drop)
            if reason is not None:
                raise CompareRefused(f"not promoting {b[0]}@{b[1]}: {reason} (--force to override)")
            promote_and_announce(registry, b[0], b[1], settings, announce=announce)

    def _read_stream(
        settings: Settings, timeout_s: float
    ) -> tuple[list[ModelComparison], dict[str, list[float]]]:
        raw = asyncio.run(_read_topic(settings, settings.topic(MODEL_COMPARISONS.name), timeout_s))
        comparisons = []
        for value in raw:
            try:
                comparisons.append(ModelComparison.from_wire(orjson.loads(value)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # not ours to judge: a malformed record is skipped
        try:
            maintenance = asyncio.run(
                _read_topic(settings, settings.topic(MAINTENANCE.name), timeout_s)
            )
        except CompareRefused:
            maintenance = []  # no maintenance topic: agreement and latency only
        failures, _ = _failures(maintenance)
        return comparisons, failures
