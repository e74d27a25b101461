"""`edgeml tail alerts|predictions|dlq|late`: print live records readably (or as JSON lines).

edgeml tail alerts --severity warning            # warnings and criticals, as they happen
edgeml tail predictions -d dev-0001 -d dev-0002  # two devices
edgeml tail predictions --anomalies --json | jq .anomaly_score
edgeml tail dlq --from-beginning --limit 20      # why the last messages were rejected
edgeml tail late --from-beginning --until-end    # everything so far, then stop
edgeml tail predictions --from-beginning --until-end --json --bootstrap kafka:9092 > all.jsonl
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from typing import Any

import orjson
import typer
from rich.console import Console

from edgeml.app.cli.options import BOOTSTRAP_OPTION, counted, settings_with
from edgeml.app.errors import EdgeMLError
from edgeml.app.tail import SEVERITIES, TAIL_TOPICS, TailFilter, tail_topic

__all__ = ["NothingMatched", "add_to", "render"]

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _time(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "?"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(kind: str, record: dict[str, Any]) -> str:
    """One line of rich markup for a record of the given kind."""
    if kind == "alerts":
        style = _STYLE.get(record.get("severity", ""), "white")
        drivers = ", ".join(
            f"{d['metric']}.{d['feature']} z={d['zscore']:+.1f}"
            for d in record.get("drivers", [])[:3]
        )
        state = str(record.get("state", "?")).upper()
        severity = record.get("severity", "?")
        return (
            f"[{style}]{state:8}[/] [{style}]{severity:8}[/] "
            f"{_time(record.get('ts'))} [bold]{record.get('device_id')}[/] "
            f"score={record.get('score', 0):.3f} thr={record.get('threshold', 0):.3f} {drivers}"
        )
    if kind == "dlq":
        return (
            f"[red]{record.get('error.class')}[/] {record.get('error.reason')} "
            f"(from {record.get('origin.topic')}[{record.get('origin.partition')}]"
            f"@{record.get('origin.offset')}) {record.get('original', '')[:60]!r}"
        )
    flag = " [magenta]LATE[/]" if record.get("late") else ""
    mark = "[red]ANOMALY[/]" if record.get("is_anomaly") else "ok     "
    p_fail = record.get("failure_prob")
    failure = "p_fail=n/a" if p_fail is None else f"p_fail={p_fail:.3f}"
    return (
        f"{mark} {_time(record.get('ts'))} [bold]{record.get('device_id')}[/] #{record.get('seq')} "
        f"anomaly={record.get('anomaly_score', 0):.3f} {failure}{flag}"
    )


def add_to(cli: typer.Typer) -> None:
    @cli.command()
    def tail(
        kind: str = typer.Argument(..., help=f"One of: {', '.join(TAIL_TOPICS)}."),
        device: list[str] | None = typer.Option(  # noqa: B008
            None, "--device", "-d", help="Only this device (repeat for several)."
        ),
        severity: str = typer.Option("info", "--severity", "-s", help="Minimum alert severity."),
        anomalies: bool = typer.Option(
            False, "--anomalies", help="Predictions: only readings scored as anomalous."
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
        from_beginning: bool = typer.Option(
            False, "--from-beginning", help="Start at the topic's beginning (default: now)."
        ),
        limit: int | None = typer.Option(
            None, "--limit", "-n", min=1, help="Stop after N records."
        ),
        timeout: float | None = typer.Option(
            None, "--timeout", min=0.1, help="Stop after S seconds."
        ),
        until_end: bool = typer.Option(
            False,
            "--until-end",
            help="Stop once every partition is read up to its end offset as it was at the start "
            "(with --from-beginning: everything so far); the count goes to stderr.",
        ),
        bootstrap: str | None = BOOTSTRAP_OPTION,
    ) -> None:
        """Follow an output topic and print its records as they arrive. Exits 1 when it stops
        (--timeout, --until-end) without a matching record, as grep does."""
        if kind not in TAIL_TOPICS:
            raise typer.BadParameter(
                f"{kind!r}; choose one of: {', '.join(TAIL_TOPICS)}", param_hint="KIND"
            )
        if severity not in SEVERITIES:
            raise typer.BadParameter(
                f"{severity!r}; choose one of: {', '.join(SEVERITIES)}", param_hint="--severity"
            )
        where = TailFilter(
            min_severity=severity, devices=frozenset(device or ()), anomalies_only=anomalies
        )
        settings = settings_with(bootstrap)
        console = Console(highlight=False, soft_wrap=True)  # one line per record, any width
        errors = Console(stderr=True, highlight=False, soft_wrap=True)

        def show(record: dict[str, Any]) -> None:
            if as_json:
                sys.stdout.write(orjson.dumps(record).decode() + "\n")
                sys.stdout.flush()
            else:
                console.print(render(kind, record))

        def ready(topic: str) -> None:
            start = "its beginning" if from_beginning else "now"
            errors.print(f"[dim]edgeml tail: following {topic} from {start}[/]")

        began = time.monotonic()
        outcome = asyncio.run(
            tail_topic(
                settings,
                kind,
                show,
                where=where,
                from_beginning=from_beginning,
                limit=limit,
                timeout_s=timeout,
                until_end=until_end,
                on_ready=ready,
            )
        )
        waited = time.monotonic() - began
        if not outcome.topic_found:
            raise NothingMatched(f"topic {outcome.topic} does not exist (waited {waited:.1f} s)")
        if outcome.matched == 0:
            span = "up to its end" if outcome.stopped_by == "end" else f"in {waited:.1f} s"
            raise NothingMatched(
                f"no records matched {_describe(where)} in {outcome.topic} "
                f"({outcome.read} read {span})"
            )
        if outcome.stopped_by == "end":
            errors.print(
                f"[dim]edgeml tail: {counted(outcome.matched, 'record')} matched in "
                f"{counted(outcome.read, 'message')} up to the end of {outcome.topic}[/]"
            )


class NothingMatched(EdgeMLError):
    """`edgeml tail` stopped without showing a record (exit 1, as grep does)."""


def _describe(where: TailFilter) -> str:
    parts = []
    devices = sorted(where.devices | ({where.device} if where.device else set()))
    if devices:
        parts.append(f"device {', '.join(devices)}")
    if where.min_severity != SEVERITIES[0]:
        parts.append(f"severity >= {where.min_severity}")
    if where.anomalies_only:
        parts.append("anomalies only")
    return " and ".join(parts) if parts else "(no filter)"
