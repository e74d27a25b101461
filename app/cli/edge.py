"""`edgeml edge run`: the edge agent (score locally, keep everything in a durable outbox, forward
to Kafka when reachable; `edge/`, docs/edge.md).

The sources that need the simulator or the CSV/JSONL reader (`sim/`) are built here: the agent
package itself imports neither (import contract `edge-standalone`). Flags override the
`EDGEML_EDGE_*` settings they name; everything else comes from `EdgeSettings`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from edgeml.app.cli import edge_models

__all__ = ["add_to"]

_SOURCES = ("sim", "file", "stdin", "mqtt")
_FORMATS = ("auto", "wire", "csv", "jsonl")
_UNTIL = ("forever", "scored", "synced")
_RAW = ("off", "on", "downsample")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r}; choose one of: {', '.join(choices)}", param_hint=name)
    return value


def add_to(cli: typer.Typer) -> None:
    edge_cli = typer.Typer(
        help="The edge agent: offline scoring, outbox, sync.", no_args_is_help=True
    )
    cli.add_typer(edge_cli, name="edge")
    edge_models.add_to(edge_cli)

    @edge_cli.command("run")
    def run(
        source: str = typer.Option(
            "sim", "--source", "-s", help="sim, file, stdin or mqtt (EDGEML_EDGE_MQTT_*)."
        ),
        file: Path | None = typer.Option(None, "--file", "-f", help="With --source file."),  # noqa: B008
        fmt: str = typer.Option(
            "auto",
            "--format",
            help="File/stdin format: wire (one platform message per line), "
            "csv, jsonl (as `edgeml replay` reads them), auto (by extension; stdin: wire).",
        ),
        devices: int = typer.Option(20, "--devices", "-n", help="Simulated devices."),
        count: int = typer.Option(1000, "--count", "-c", help="Simulated readings per device."),
        seed: int = typer.Option(0, "--seed", help="Simulator seed."),
        interval: float = typer.Option(1.0, "--interval", help="Event s between readings."),
        warmup: float = typer.Option(300.0, "--warmup", help="Event s before any fault."),
        incident_every: float = typer.Option(
            900.0, "--incident-every", help="Mean event s between faults."
        ),
        start: str | None = typer.Option(
            None,
            "--start",
            help="Event time of the first simulated reading (ISO-8601 or epoch "
            "s); default a fixed 2026-01-01T00:00Z, so a restart resumes the same data.",
        ),
        rate: float = typer.Option(
            0.0, "--rate", "-r", help="Messages/s read (0 = as fast as scored)."
        ),
        until: str = typer.Option("forever", "--until", help="forever, scored or synced."),
        bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers."),
        topic_prefix: str | None = typer.Option(None, "--topic-prefix", help="Topic name prefix."),
        db: Path | None = typer.Option(None, "--db", help="The agent's SQLite file."),  # noqa: B008
        agent_id: str | None = typer.Option(None, "--agent-id", help="This agent's name."),
        web_port: int | None = typer.Option(None, "--web-port", help="/health, /metrics; 0 = off."),
        raw: str | None = typer.Option(None, "--raw", help="Raw readings: off, on, downsample."),
        sync: bool | None = typer.Option(None, "--sync/--no-sync", help="Forward to Kafka."),
        model_public_key: Path | None = typer.Option(  # noqa: B008
            None, "--model-public-key", help="Load only models this Ed25519 key signed."
        ),
        loglevel: str = typer.Option("info", "--loglevel", "-l", help="Log level."),
    ) -> None:
        """Score a sensor source locally, keep every output in the outbox, forward when Kafka
        answers. Alerts print as JSON lines on stdout; logs go to stderr."""
        from edgeml.edge.agent import EdgeAgent
        from edgeml.edge.settings import EdgeSettings

        _choice("--source", source, _SOURCES)
        _choice("--format", fmt, _FORMATS)
        _choice("--until", until, _UNTIL)
        if raw is not None:
            _choice("--raw", raw, _RAW)
        level = getattr(logging, loglevel.upper(), None)
        if not isinstance(level, int):
            raise typer.BadParameter(f"{loglevel!r} is not a log level", param_hint="-l")
        if not 0 <= rate <= 10_000_000:
            raise typer.BadParameter(f"{rate} is not in [0, 10000000]", param_hint="--rate")
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("bootstrap_servers", bootstrap),
                ("topic_prefix", topic_prefix),
                ("db_path", db),
                ("agent_id", agent_id),
                ("web_port", web_port),
                ("raw_readings", raw),
                ("sync_enabled", sync),
            )
            if value is not None
        }
        settings = _settings(EdgeSettings, overrides)
        logging.basicConfig(
            level=level, stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )  # fmt: skip
        messages = _source(
            settings, source, file, fmt, rate,
            sim={"devices": devices, "count": count, "seed": seed, "interval": interval,
                 "warmup": warmup, "incident_every": incident_every, "start": start},
        )  # fmt: skip
        agent = EdgeAgent(settings)
        code = asyncio.run(agent.run(messages, until))  # type: ignore[arg-type]
        raise typer.Exit(code)


def _settings(cls: Any, overrides: dict[str, Any]) -> Any:
    """`EdgeSettings(**overrides)`; a bad value is one line naming its variable (or flag)."""
    from pydantic import ValidationError

    from edgeml.app.errors import ConfigError

    try:
        return cls(**overrides)
    except ValidationError as exc:
        parts = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"EDGEML_EDGE_{field.upper()}" if field else "EdgeSettings"
            if field in overrides:
                name = f"{name} (or its flag)"
            parts.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ConfigError("; ".join(parts)) from None


def _source(
    settings: Any, source: str, file: Path | None, fmt: str, rate: float, sim: dict[str, Any]
) -> Any:
    from edgeml.edge.sources import ThreadedSource, iter_lines, paced

    if source == "mqtt":
        from edgeml.edge.mqtt import mqtt_messages

        s = settings
        return ThreadedSource(
            None,
            lambda: mqtt_messages(
                s.mqtt_host, s.mqtt_port, s.mqtt_topic, qos=s.mqtt_qos, client_id=s.mqtt_client_id
            ),
        )
    if source == "stdin":
        if fmt not in ("auto", "wire"):
            raise typer.BadParameter("stdin takes --format wire", param_hint="--format")
        return ThreadedSource(None, lambda: paced(iter_lines(sys.stdin.buffer), rate))
    if source == "file":
        if file is None:
            raise typer.BadParameter("--source file needs --file PATH", param_hint="--file")
        if not file.is_file():
            raise typer.BadParameter(f"{file} is not a readable file", param_hint="--file")
        return ThreadedSource(
            f"file:{file.resolve()}:{fmt}", lambda: paced(_file_messages(file, fmt), rate)
        )
    config = _sim_config(sim)
    name = (
        f"sim:seed={config.seed}:devices={config.devices}:count={config.count}:"
        f"interval={config.interval}:start={config.start_ts}:warmup={config.warmup}:"
        f"incident_every={config.incident_every}"
    )
    return ThreadedSource(name, lambda: paced(_sim_messages(config), rate))


def _sim_config(sim: dict[str, Any]) -> Any:
    from edgeml.app.cli.simulate import parse_start
    from edgeml.sim.generator import DEFAULT_START_TS, SimConfig

    start = sim.pop("start")
    try:
        return SimConfig(
            start_ts=DEFAULT_START_TS if start is None else round(parse_start(start), 3), **sim
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="simulator options") from None


def _sim_messages(config: Any) -> Iterator[bytes]:
    import orjson

    from edgeml.sim.generator import simulate

    for reading in simulate(config).readings():
        yield orjson.dumps(reading.to_wire())


def _file_messages(file: Path, fmt: str) -> Iterator[bytes]:
    import orjson

    from edgeml.edge.sources import iter_lines
    from edgeml.sim.replay import file_readings

    if fmt == "wire":
        with file.open("rb") as stream:
            yield from iter_lines(stream)
        return
    for reading in file_readings(file, None if fmt == "auto" else fmt):
        yield orjson.dumps(reading.to_wire())
