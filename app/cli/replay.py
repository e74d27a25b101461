"""`edgeml replay FILE`: send recorded readings (CSV or JSON Lines) to Kafka, paced or flat out."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeml.app.errors import EdgeMLError
from edgeml.app.settings import Settings

if TYPE_CHECKING:  # the simulator is imported by the command, not by every `edgeml` process
    from edgeml.sim.replay import ReplayColumns, ReplayStats

__all__ = ["ReplayFailed", "add_to"]


def add_to(cli: typer.Typer) -> None:
    @cli.command()
    def replay(
        file: Path = typer.Argument(  # noqa: B008
            ..., exists=True, dir_okay=False, readable=True, help="A .csv or .jsonl file."
        ),
        device: str | None = typer.Option(
            None, "--device", help="Use this device id for all rows."
        ),
        device_column: str | None = typer.Option(
            None, "--device-column", help="Column with the device id (default: device_id)."
        ),
        timestamp_column: str | None = typer.Option(
            None,
            "--timestamp-column",
            help="Column with ISO-8601 or epoch-second times (default: ts, timestamp, time, ...).",
        ),
        metric_columns: str | None = typer.Option(
            None,
            "--metric-columns",
            help="Comma-separated metric columns (default: every other numeric column).",
        ),
        speed: float = typer.Option(
            0.0,
            "--speed",
            help="0 = as fast as possible; X = X times real time, following the event-time gaps.",
        ),
        batch: int = typer.Option(
            1, "--batch", "-b", help='Readings per message; > 1 sends {"readings": [...]}.'
        ),
        fmt: str | None = typer.Option(
            None, "--format", help="csv or jsonl (default: from the file suffix)."
        ),
        site: str | None = typer.Option(None, "--site", help="Set this site on every reading."),
        bootstrap: str | None = typer.Option(
            None, "--bootstrap", help="Kafka bootstrap servers (default: EDGEML_BOOTSTRAP_SERVERS)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress display."),
    ) -> None:
        """Replay a file of recorded readings into the sensor-readings topic; `seq` counts each
        device's rows from 0 and `sent_at` is the scheduled send time. The whole file is
        checked before anything is sent."""
        if speed < 0 or speed > 1_000_000:
            raise typer.BadParameter(f"{speed} is not in [0, 1000000]", param_hint="--speed")
        if not 1 <= batch <= 10_000:
            raise typer.BadParameter(f"{batch} is not in [1, 10000]", param_hint="--batch")
        if fmt is not None and fmt not in ("csv", "jsonl"):
            raise typer.BadParameter(f"{fmt!r}; choose one of: csv, jsonl", param_hint="--format")
        metrics = None
        if metric_columns is not None:
            metrics = tuple(c.strip() for c in metric_columns.split(",") if c.strip())
            if not metrics:
                raise typer.BadParameter("no column names", param_hint="--metric-columns")
        from edgeml.sim.replay import ReplayColumns

        columns = ReplayColumns(
            device=device,
            device_column=device_column,
            timestamp_column=timestamp_column,
            metric_columns=metrics,
            site=site,
        )
        settings = Settings(bootstrap_servers=bootstrap) if bootstrap else Settings()
        checked = _validate(file, fmt, columns)
        if checked.readings == 0:
            typer.echo(f"replay: nothing to send ({checked.rows} rows, skipped: {checked.skipped})")
            return
        asyncio.run(_run(settings, file, fmt, columns, speed, batch, progress))


class ReplayFailed(EdgeMLError):
    """The file could not be read, or sending stopped part-way (the message says how many
    readings went out)."""


def _validate(file: Path, fmt: str | None, columns: ReplayColumns) -> ReplayStats:
    """Read the whole file once before connecting, so a bad line anywhere (binary content, a
    line that is not JSON) fails the command with nothing sent. The send pass reads it again
    rather than keeping the readings: memory stays flat on files of millions of rows."""
    from edgeml.sim.replay import ReplayError, ReplayStats, read_rows, to_readings

    stats = ReplayStats()
    try:
        for _ in to_readings(read_rows(file, fmt), columns, stats):
            pass
    except ReplayError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    except OSError as exc:
        raise ReplayFailed(f"cannot read {file}: {exc.strerror or exc}") from None
    return stats


async def _run(
    settings: Settings,
    file: Path,
    fmt: str | None,
    columns: ReplayColumns,
    speed: float,
    batch: int,
    progress: bool,
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeml.app.kafka_admin import BrokerUnavailable, ensure_topics
    from edgeml.sim.replay import ReplayError, ReplayStats, read_rows, to_readings
    from edgeml.sim.sender import (
        SendStats,
        as_fast_as_possible,
        event_time_pace,
        plan_messages,
        send_messages,
    )

    stats = ReplayStats()
    readings = to_readings(read_rows(file, fmt), columns, stats)
    first = next(readings, None)
    if first is None:  # emptied since `_validate` read it
        raise ReplayFailed(f"{file} has no readings any more (it changed since it was checked)")
    pace = event_time_pace(speed, first.ts) if speed > 0 else as_fast_as_possible
    messages = plan_messages(itertools.chain([first], readings), pace=pace, batch=batch)
    ensure_topics(settings)
    producer = AIOKafkaProducer(**settings.producer_config(), client_id=f"{settings.app_id}-replay")
    try:
        await producer.start()
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]replay[/] {task.completed:,} readings, {task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=True,
    )
    task = bar.add_task("send", total=None, rate=0.0)

    def on_sent(sent: SendStats) -> None:
        elapsed = max(time.time() - sent.started_at, 1e-9)
        bar.update(task, completed=sent.readings, rate=sent.readings / elapsed)

    sent = SendStats()
    try:
        with bar:
            await send_messages(
                producer, messages, topic_name=settings.topic, on_sent=on_sent, stats=sent
            )
        await producer.flush()
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"sending to {settings.bootstrap_servers} failed after {sent.readings:,} readings "
            f"were handed to the producer: {exc}"
        ) from None
    except (ReplayError, OSError) as exc:  # the file changed (or broke) since `_validate`
        raise ReplayFailed(
            f"reading {file} failed after {sent.readings:,} readings were sent: {exc}"
        ) from None
    finally:
        await producer.stop()
    skipped = sum(stats.skipped.values())
    typer.echo(
        f"replay: {sent.readings:,} readings from {len(sent.readings_per_device)} devices in "
        f"{sent.messages:,} messages; {stats.rows:,} rows, {skipped} skipped"
        + (f" ({', '.join(f'{k}: {v}' for k, v in stats.skipped.items())})" if skipped else "")
        + f"; {sent.elapsed:.1f} s, {sent.rate:,.0f} readings/s"
    )
    for example in stats.examples if skipped else ():
        typer.echo(f"  skipped {example}", err=True)
