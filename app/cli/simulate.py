"""`edgeml simulate`: send a simulated fleet's readings (with labelled faults) to Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import typer

from edgeml.app.cli.options import BOOTSTRAP_OPTION, settings_with
from edgeml.app.settings import Settings

__all__ = ["add_to", "parse_start"]


def parse_start(value: str) -> float:
    """ISO-8601 (a missing timezone means UTC) or epoch seconds -> epoch seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not ISO-8601 (e.g. 2026-01-01T00:00:00Z) or epoch seconds",
            param_hint="--start",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def add_to(cli: typer.Typer) -> None:
    @cli.command()
    def simulate(
        devices: int = typer.Option(10, "--devices", "-n", help="Number of devices."),
        rate: float | None = typer.Option(
            None,
            "--rate",
            "-r",
            help="Total readings/s offered; 0 = as fast as possible. "
            "Default: real time (devices / interval).",
        ),
        count: int = typer.Option(3600, "--count", "-c", help="Readings per device."),
        seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same data."),
        interval: float = typer.Option(
            1.0, "--interval", help="Event-time seconds between two readings of a device."
        ),
        batch: int = typer.Option(
            1, "--batch", "-b", help='Readings per message; > 1 sends {"readings": [...]}.'
        ),
        ground_truth: Path | None = typer.Option(  # noqa: B008
            None, "--ground-truth", "-g", help="Write the ground truth (JSONL) here."
        ),
        malformed_count: int = typer.Option(
            0, "--malformed", help="Malformed messages to mix in (spread over all kinds)."
        ),
        start: str | None = typer.Option(
            None,
            "--start",
            help="Event time of the first reading (ISO-8601 or epoch s). Default: now when "
            "paced; now - count*interval when --rate 0, so the run ends about now.",
        ),
        day_seconds: float = typer.Option(
            86_400.0, "--day-seconds", help="Length of a simulated day; e.g. 600 to compress."
        ),
        incident_every: float = typer.Option(
            900.0, "--incident-every", help="Mean event-time seconds between a device's faults."
        ),
        warmup: float = typer.Option(
            300.0, "--warmup", help="Event-time seconds of normal operation before any fault."
        ),
        bootstrap: str | None = BOOTSTRAP_OPTION,
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Simulate DEVICES devices sending COUNT readings each, with injected, labelled faults
        and maintenance events; ground truth goes to --ground-truth and the ground-truth topic."""
        _check("--devices", devices, 1, 100_000)
        _check("--count", count, 1, 10_000_000)
        _check("--interval", interval, 0.01, 86_400)
        _check("--batch", batch, 1, 10_000)
        _check("--malformed", malformed_count, 0, 1_000_000)
        _check("--day-seconds", day_seconds, 60, 10_000_000)
        _check("--incident-every", incident_every, 1, 10_000_000)
        _check("--warmup", warmup, 0, 10_000_000)
        if rate is not None:
            _check("--rate", rate, 0, 10_000_000)
        if devices * count > 50_000_000:
            raise typer.BadParameter(
                f"{devices} x {count} readings is too many for one run (max 50 000 000)",
                param_hint="--count",
            )
        settings = settings_with(bootstrap)
        offered = devices / interval if rate is None else rate
        now = time.time()
        if start is not None:
            start_ts = parse_start(start)
        elif offered == 0:
            start_ts = now - count * interval
        else:
            start_ts = now
        asyncio.run(
            _run(
                settings,
                devices=devices,
                count=count,
                seed=seed,
                interval=interval,
                rate=offered,
                batch=batch,
                malformed_count=malformed_count,
                start_ts=round(start_ts, 3),
                day_seconds=day_seconds,
                incident_every=incident_every,
                warmup=warmup,
                ground_truth=ground_truth,
                progress=progress,
            )
        )


def _check(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise typer.BadParameter(f"{value} is not in [{low}, {high}]", param_hint=name)


async def _run(
    settings: Settings,
    *,
    devices: int,
    count: int,
    seed: int,
    interval: float,
    rate: float,
    batch: int,
    malformed_count: int,
    start_ts: float,
    day_seconds: float,
    incident_every: float,
    warmup: float,
    ground_truth: Path | None,
    progress: bool,
) -> None:
    import numpy as np
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeml.app.kafka_admin import BrokerUnavailable, ensure_topics
    from edgeml.sim.generator import SimConfig, simulate
    from edgeml.sim.malformed import malformed
    from edgeml.sim.sender import (
        SendStats,
        as_fast_as_possible,
        fixed_rate,
        plan_messages,
        send_messages,
    )
    from edgeml.topics.catalog import GROUND_TRUTH, READINGS

    config = SimConfig(
        devices=devices,
        count=count,
        seed=seed,
        interval=interval,
        start_ts=start_ts,
        day_seconds=day_seconds,
        incident_every=incident_every,
        warmup=warmup,
    )
    sim = simulate(config)
    bad = list(
        malformed(
            malformed_count,
            np.random.default_rng([seed, 1]),
            device_ids=[d.device_id for d in sim.devices],
            ts=start_ts,
        )
    )
    total = sim.readings_count
    messages = plan_messages(
        sim.events(),
        pace=fixed_rate(rate) if rate > 0 else as_fast_as_possible,
        batch=batch,
        malformed=bad,
        total_readings=total,
    )
    ensure_topics(settings)
    console = Console(stderr=True, highlight=False)
    producer = AIOKafkaProducer(
        **settings.producer_config(), client_id=f"{settings.app_id}-simulate"
    )
    try:
        await producer.start()
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    bar = Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} readings"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress or total < 1000,
        transient=True,
    )
    task = bar.add_task("send", total=total, rate=0.0)

    def on_sent(stats: SendStats) -> None:
        elapsed = max(time.time() - stats.started_at, 1e-9)
        bar.update(task, completed=stats.readings, rate=stats.readings / elapsed)

    stats = SendStats()
    try:
        with bar:
            stats = await send_messages(
                producer, messages, topic_name=settings.topic, on_sent=on_sent
            )
        truth = sim.ground_truth(
            malformed_by_kind=stats.malformed_by_kind,
            run_started_at=stats.started_at,
            run_finished_at=stats.finished_at,
            topic=settings.topic(READINGS.name),
            readings_per_device=stats.readings_per_device,
        )
        for line, incident in zip(
            truth.lines(),
            (None, *sorted(truth.incidents, key=lambda i: (i.start_ts, i.device_id))),
            strict=True,
        ):
            key = incident.device_id.encode() if incident is not None else b"summary"
            await producer.send(settings.topic(GROUND_TRUTH.name), value=line, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    if ground_truth is not None:
        truth.write(ground_truth)
    failures = len(truth.failures)
    typer.echo(
        f"simulate: {stats.readings:,} readings from {devices} devices, "
        f"{stats.malformed} malformed, {len(truth.incidents)} incidents, {failures} failures, "
        f"{stats.maintenance} maintenance events in {stats.messages:,} messages; "
        f"{stats.elapsed:.1f} s, {stats.rate:,.0f} readings/s"
        + (f"; ground truth: {ground_truth}" if ground_truth else "")
    )
