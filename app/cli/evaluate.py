"""`edgeml evaluate`: score a simulated run against its ground truth, from the output topics; or
a replayed labelled corpus (`--corpus DIR`) with the window-based streaming benchmark."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeml.app.settings import Settings

if TYPE_CHECKING:  # the simulator is imported by the command, not by every `edgeml` process
    from edgeml.sim.evaluation import AlertRecord, PredictionRecord
    from edgeml.sim.truth import GroundTruth

__all__ = ["add_to"]

_HELP = """Read the run's predictions, anomaly alerts and dead letters from Kafka and compare them
with the ground truth written by `edgeml simulate --ground-truth FILE`.

The expected readings are the ones the ground-truth summary lists (device d sent seqs
0..n_d-1; sensor-readings itself is not re-read). Only records produced since the run started
(Kafka timestamp >= the summary's run_started_at) are read, and dead letters only when they
came from the run's topic. Reading goes to the topics' end offsets and keeps polling until
every reading has a prediction or --timeout seconds have passed.

Incident recall: an incident counts as detected when an `open` alert of its device has ts in
[start_ts, end_ts + tolerance]. Alert precision: open alerts inside such a window / all open
alerts. Detection delay: first matching alert ts - incident start (event time). A failure is
predicted when failure_prob >= threshold within `horizon` seconds before it. End-to-end
latency = Kafka record timestamp of the prediction message - the reading's sent_at (the
scheduled send time), in ms.

With --corpus DIR (a corpus from `python -m edgeml.sim.corpus DIR`, replayed with `edgeml replay
DIR --device-from filename`) it reads --predictions and --alerts JSON lines (`edgeml tail
predictions|alerts --from-beginning --until-end --json`) and prints the window-based score
(NAB form, three profiles): the calibrated score at the best fleet-wide threshold, the deployed
alert decisions as they are, and river's HalfSpaceTrees and an EW z-score on the same series."""


def add_to(cli: typer.Typer) -> None:
    @cli.command(help=_HELP, short_help="Score a simulated run against its ground truth.")
    def evaluate(
        ground_truth: Path | None = typer.Option(  # noqa: B008
            None, "--ground-truth", "-g", exists=True, dir_okay=False, help="Ground truth JSONL."
        ),
        corpus: Path | None = typer.Option(  # noqa: B008
            None, "--corpus", exists=True, file_okay=False, help="A labelled corpus directory."
        ),
        predictions_file: Path | None = typer.Option(  # noqa: B008
            None, "--predictions", exists=True, dir_okay=False, help="With --corpus: JSON lines."
        ),
        alerts_file: Path | None = typer.Option(  # noqa: B008
            None, "--alerts", exists=True, dir_okay=False, help="With --corpus: JSON lines."
        ),
        split: str = typer.Option(
            "holdout", "--split", help="With --corpus: holdout, tune or all."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        timeout: float = typer.Option(
            30.0, "--timeout", help="Seconds to wait for missing predictions (0 = read once)."
        ),
        tolerance: float = typer.Option(
            30.0, "--tolerance", help="Seconds after an incident ends that an alert still counts."
        ),
        threshold: float = typer.Option(
            0.5, "--threshold", help="failure_prob at or above which a failure is predicted."
        ),
        horizon: float = typer.Option(
            900.0, "--horizon", help="Seconds before a failure in which a prediction counts."
        ),
        bootstrap: str | None = typer.Option(
            None, "--bootstrap", help="Kafka bootstrap servers (default: EDGEML_BOOTSTRAP_SERVERS)."
        ),
    ) -> None:
        if corpus is not None:
            if ground_truth is not None:
                raise typer.BadParameter("give --corpus or --ground-truth, not both")
            _corpus(corpus, predictions_file, alerts_file, split, as_json)
            return
        if ground_truth is None:
            raise typer.BadParameter("give --ground-truth FILE (or --corpus DIR)")
        from edgeml.sim.evaluation import evaluate as compute
        from edgeml.sim.truth import GroundTruth

        for name, value, high in (
            ("--timeout", timeout, 86_400.0),
            ("--tolerance", tolerance, 86_400.0),
            ("--horizon", horizon, 10_000_000.0),
            ("--threshold", threshold, 1.0),
        ):
            if not 0 <= value <= high:
                raise typer.BadParameter(f"{value} is not in [0, {high:g}]", param_hint=name)
        try:
            truth = GroundTruth.read(ground_truth)
        except (ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(
                f"not a ground-truth file: {exc}", param_hint="--ground-truth"
            ) from None
        settings = Settings(bootstrap_servers=bootstrap) if bootstrap else Settings()
        predictions, alerts, dlq = asyncio.run(_collect(settings, truth, timeout))
        report = compute(
            truth,
            predictions,
            alerts,
            dlq_by_class=dlq,
            tolerance=tolerance,
            threshold=threshold,
            horizon=horizon,
        ).to_dict()
        if as_json:
            typer.echo(json.dumps(report))
        else:
            _print_table(report)


def _corpus(
    folder: Path, predictions: Path | None, alerts: Path | None, split: str, as_json: bool
) -> None:
    import orjson

    from edgeml.sim.corpus_eval import score_outputs

    if predictions is None or alerts is None:
        raise typer.BadParameter("--corpus needs --predictions FILE and --alerts FILE")
    if split not in ("holdout", "tune", "all"):
        raise typer.BadParameter(f"{split!r} is not holdout, tune or all", param_hint="--split")

    def lines(path: Path) -> list[dict[str, Any]]:
        out = []
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    raise typer.BadParameter(f"{path.name}:{number}: not JSON") from None
        return out

    try:
        report = score_outputs(
            folder, lines(predictions), lines(alerts), None if split == "all" else split
        )
    except (ValueError, KeyError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--corpus") from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    calibrated: Any = report["calibrated"]
    deployed: Any = report["deployed"]
    lines_out = [
        f"corpus {folder} ({report['split']}, {report['series']} series)",
        f"  calibrated score, best fleet-wide threshold {calibrated['threshold']:.3f}: "
        f"{calibrated['score']:.1f}",
        "  deployed alerts: "
        + ", ".join(f"{name} {value:.1f}" for name, value in deployed.items()),
    ]
    baselines: Any = report.get("baselines") or {}
    for name, value in baselines.items():
        lines_out.append(f"  baseline {name}: {value:.1f}")
    typer.echo("\n".join(lines_out))


async def _collect(
    settings: Settings, truth: GroundTruth, wait_s: float
) -> tuple[list[PredictionRecord], list[AlertRecord], Counter[str]]:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    from edgeml.app.kafka_admin import BrokerUnavailable
    from edgeml.sim.evaluation import AlertRecord, PredictionRecord
    from edgeml.topics.catalog import ALERTS, DLQ, PREDICTIONS

    devices = set(truth.summary.readings_per_device)
    expected = truth.summary.readings
    origin = truth.summary.topic.encode()
    since_ms = int(truth.summary.run_started_at * 1000)
    names = {settings.topic(s.name): s.name for s in (PREDICTIONS, ALERTS, DLQ)}
    consumer = AIOKafkaConsumer(
        **settings.consumer_config(None),  # assign() + seek, never commits: no group needed
        client_id=f"{settings.app_id}-evaluate",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    predictions: list[PredictionRecord] = []
    alerts: list[AlertRecord] = []
    dlq: Counter[str] = Counter()
    seen: set[tuple[str, int]] = set()
    try:
        # aiokafka keeps partition metadata only for subscribed topics; ask for all of it
        cluster = await consumer._client.fetch_all_metadata()
        tps = [
            TopicPartition(topic, p)
            for topic in names
            for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return predictions, alerts, dlq
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            found = starts.get(tp)
            if found is None:
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)
        deadline = time.monotonic() + wait_s
        while True:
            ends = await consumer.end_offsets(tps)
            while await _behind(consumer, tps, ends):
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    kind = names[tp.topic]
                    for record in records:
                        if record.timestamp < since_ms:
                            continue
                        arrived = record.timestamp / 1000.0
                        if kind == DLQ.name:
                            headers = dict(record.headers or ())
                            if headers.get("edgeml.origin.topic", origin) == origin:
                                error = headers.get("edgeml.error.class", b"?").decode()
                                dlq[error] += 1
                            continue
                        try:
                            value = orjson.loads(record.value or b"null")
                        except orjson.JSONDecodeError:
                            continue
                        if kind == ALERTS.name:
                            if isinstance(value, dict) and value.get("device_id") in devices:
                                alerts.append(AlertRecord.from_wire(value))
                            continue
                        items = value.get("predictions", [value]) if isinstance(value, dict) else []
                        for item in items:
                            if isinstance(item, dict) and item.get("device_id") in devices:
                                p = PredictionRecord.from_wire(item, arrived)
                                predictions.append(p)
                                seen.add((p.device_id, p.seq))
            if len(seen) >= expected or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await consumer.stop()
    return predictions, alerts, dlq


async def _behind(consumer: Any, tps: list[Any], ends: dict[Any, int]) -> bool:
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return True
    return False


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}"
    return f"{value:,}{unit}"


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgeml evaluate", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("readings", report["readings"]),
        ("predictions", report["predictions"]),
        ("predictions per reading", report["predictions_per_reading"]),
        (
            "missing / duplicates / unexpected",
            f"{report['missing']:,} / {report['duplicates']:,} / {report['unexpected']:,}",
        ),
        ("incidents detected", f"{report['detected']} / {report['incidents']}"),
        ("incident recall", report["incident_recall"]),
        *((f"  recall: {k}", v) for k, v in report["incident_recall_by_kind"].items()),
        ("open alerts", report["alerts_open"]),
        ("alert precision", report["alert_precision"]),
        (
            "detection delay p50 / p95 (s)",
            f"{_fmt(report['detection_delay_p50_s'])} / {_fmt(report['detection_delay_p95_s'])}",
        ),
        ("failures predicted", f"{report['failures_predicted']} / {report['failures']}"),
        ("failures predicted ratio", report["failures_predicted_ratio"]),
        ("lead time p50 (s)", report["lead_time_p50_s"]),
        ("failure alarm precision", report["failure_alarm_precision"]),
        ("dead letters (expected)", f"{report['dlq']:,} ({report['dlq_expected']:,})"),
        *((f"  dlq: {k}", v) for k, v in report["dlq_by_class"].items()),
        (
            "latency p50 / p95 / p99 (ms)",
            " / ".join(_fmt(report["latency_ms"][q]) for q in ("p50", "p95", "p99")),
        ),
    ]
    for name, value in rows:
        table.add_row(name, value if isinstance(value, str) else _fmt(value))
    Console().print(table)
