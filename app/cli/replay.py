"""`edgeml replay PATH...`: send recorded readings (CSV or JSON Lines files, directories of them,
glob patterns) to Kafka, merged in event-time order, paced or flat out."""

from __future__ import annotations

import asyncio
import itertools
import resource
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeml.app.cli.options import BOOTSTRAP_OPTION, counted, settings_with
from edgeml.app.errors import EdgeMLError
from edgeml.app.settings import Settings

if TYPE_CHECKING:  # the simulator is imported by the command, not by every `edgeml` process
    from edgeml.sim.replay import ReplayColumns, ReplayStats
    from edgeml.sim.sender import SendStats

__all__ = ["ReplayFailed", "add_to"]

_HELP = """Replay recorded readings into the sensor-readings topic.

PATH is a .csv / .jsonl / .ndjson / .json file, a directory (every such file directly inside
it, sorted; a corpus's labels.json is left out) or a glob pattern (quote it; ** crosses
directories). All files of one run are merged in event-time order and sent through one producer;
each device's `seq` counts its readings from 0 over all files, and `sent_at` is the scheduled
send time. The device id comes from a column (--device-from column, the default: --device-column
or device_id), from each file's name without its suffix (--device-from filename: one device per
file), or is one fixed id (--device).

Timestamps, CSV and JSON alike: ISO-8601 with a zone (Z, +01:00) or epoch seconds (milliseconds
above 1e11). An ISO-8601 time without a zone is an error naming the file and line, unless
--assume-utc. Every file is checked in full before anything is sent."""

_MAX_FILES = 100_000  # one open file each while merging; the process limit is raised to fit


def add_to(cli: typer.Typer) -> None:
    @cli.command(help=_HELP, short_help="Replay recorded readings (files, directories, globs).")
    def replay(
        path: list[str] = typer.Argument(  # noqa: B008
            ..., metavar="PATH", help="Files, directories or glob patterns."
        ),
        device_from: str = typer.Option(
            "column",
            "--device-from",
            help="Device id from a 'column' (--device-column, default device_id) or from each "
            "file's 'filename' (its stem: one device per file).",
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
        assume_utc: bool = typer.Option(
            False, "--assume-utc", help="Read ISO-8601 times without a zone as UTC."
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
            None, "--format", help="csv or jsonl for every file (default: from each suffix)."
        ),
        site: str | None = typer.Option(None, "--site", help="Set this site on every reading."),
        bootstrap: str | None = BOOTSTRAP_OPTION,
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress display."),
    ) -> None:
        from edgeml.sim.replay import DEVICE_FROM, ReplayColumns, ReplayError
        from edgeml.sim.replay_paths import expand_paths

        if speed < 0 or speed > 1_000_000:
            raise typer.BadParameter(f"{speed} is not in [0, 1000000]", param_hint="--speed")
        if not 1 <= batch <= 10_000:
            raise typer.BadParameter(f"{batch} is not in [1, 10000]", param_hint="--batch")
        if fmt is not None and fmt not in ("csv", "jsonl"):
            raise typer.BadParameter(f"{fmt!r}; choose one of: csv, jsonl", param_hint="--format")
        if device_from not in DEVICE_FROM:
            raise typer.BadParameter(
                f"{device_from!r}; choose one of: {', '.join(DEVICE_FROM)}",
                param_hint="--device-from",
            )
        if device is not None and device_column is not None:
            raise typer.BadParameter(
                "give either --device or --device-column, not both", param_hint="--device"
            )
        if device_from == "filename" and (device is not None or device_column is not None):
            raise typer.BadParameter(
                "--device-from filename takes the id from the file name; leave out "
                "--device and --device-column",
                param_hint="--device-from",
            )
        metrics = None
        if metric_columns is not None:
            metrics = tuple(c.strip() for c in metric_columns.split(",") if c.strip())
            if not metrics:
                raise typer.BadParameter("no column names", param_hint="--metric-columns")
        columns = ReplayColumns(
            device=device,
            device_column=device_column,
            timestamp_column=timestamp_column,
            metric_columns=metrics,
            site=site,
            device_from="filename" if device_from == "filename" else "column",
        )
        settings = settings_with(bootstrap)
        try:
            files = expand_paths(path)
        except ReplayError as exc:
            raise typer.BadParameter(str(exc), param_hint="PATH") from None
        if len(files) > _MAX_FILES:
            raise typer.BadParameter(
                f"{len(files):,} files in one run (at most {_MAX_FILES:,}); replay them in parts",
                param_hint="PATH",
            )
        checked = _validate(files, fmt, columns, assume_utc)
        if checked.readings == 0:
            typer.echo(
                f"replay: nothing to send ({counted(checked.rows, 'row')}, "
                f"skipped: {checked.skipped})"
            )
            return
        _allow_open_files(len(files))
        asyncio.run(_run(settings, files, fmt, columns, assume_utc, speed, batch, progress))


class ReplayFailed(EdgeMLError):
    """A file could not be read, or sending stopped part-way (the message says how many
    readings went out)."""


def _validate(
    files: list[Path], fmt: str | None, columns: ReplayColumns, assume_utc: bool
) -> ReplayStats:
    """Read every file once before connecting, so a bad line anywhere (binary content, a line
    that is not JSON, a time without a zone) fails the command with nothing sent. The send pass
    reads them again rather than keeping the readings: memory stays flat on files of millions
    of rows."""
    from edgeml.sim.replay import ReplayError, ReplayStats, file_readings

    stats = ReplayStats()
    for file in files:
        try:
            for _ in file_readings(file, fmt, columns, stats, assume_utc=assume_utc):
                pass
        except ReplayError as exc:
            raise typer.BadParameter(str(exc), param_hint="PATH") from None
        except OSError as exc:
            raise ReplayFailed(f"cannot read {file}: {exc.strerror or exc}") from None
    return stats


def _allow_open_files(files: int) -> None:
    """The merge holds one open file per path; raise the soft descriptor limit towards the hard
    one when the default (often 1024) is too low for that and the producer's sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = files + 256
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ReplayFailed(
                f"{files:,} files need {needed:,} open files and this process may open "
                f"{hard:,}; replay them in parts"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _run(
    settings: Settings,
    files: list[Path],
    fmt: str | None,
    columns: ReplayColumns,
    assume_utc: bool,
    speed: float,
    batch: int,
    progress: bool,
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeml.app.kafka_admin import BrokerUnavailable, ensure_topics
    from edgeml.sim.replay import ReplayError, ReplayStats, merged_readings
    from edgeml.sim.sender import (
        SendStats,
        as_fast_as_possible,
        event_time_pace,
        plan_messages,
        send_messages,
    )

    stats = ReplayStats()
    readings = merged_readings(files, fmt, columns, stats, assume_utc=assume_utc)
    try:
        first = next(readings, None)
    except (ReplayError, OSError) as exc:
        raise ReplayFailed(f"reading failed before anything was sent: {exc}") from None
    if first is None:  # emptied since `_validate` read them
        raise ReplayFailed("no readings any more (the files changed since they were checked)")
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
    except (ReplayError, OSError) as exc:  # a file changed (or broke) since `_validate`
        raise ReplayFailed(
            f"reading failed after {sent.readings:,} readings were sent: {exc}"
        ) from None
    finally:
        await producer.stop()
    typer.echo(_summary(sent, stats, len(files)))
    for example in stats.examples if stats.skipped else ():
        typer.echo(f"  skipped {example}", err=True)


def _summary(sent: SendStats, stats: ReplayStats, files: int) -> str:
    """`replay: 4 readings from 2 devices in 1 file, 2 messages; 7 rows, 3 skipped (...); ...`"""
    skipped = sum(stats.skipped.values())
    reasons = ", ".join(f"{k}: {v}" for k, v in stats.skipped.items())
    return (
        f"replay: {counted(sent.readings, 'reading')} from "
        f"{counted(len(sent.readings_per_device), 'device')} in {counted(files, 'file')}, "
        f"{counted(sent.messages, 'message')}; {counted(stats.rows, 'row')}, {skipped} skipped"
        + (f" ({reasons})" if skipped else "")
        + f"; {sent.elapsed:.1f} s, {sent.rate:,.0f} readings/s"
    )
