"""`edgeml broker up|down|status|logs`: the local Kafka broker (KRaft, no Docker).

The first `up` fetches the pinned Kafka with Maven into `Settings.kafka_cache`; the broker's
pid file, data and logs live in `--home` (default `Settings.broker_home`, `var/kafka/`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO

import typer

from edgeml.app.settings import Settings

__all__ = ["add_to"]

STOPPED_EXIT_CODE = 3  # `status` when nothing runs, as LSB init scripts do


def add_to(cli: typer.Typer) -> None:
    broker_cli = typer.Typer(
        help="The local Kafka broker (KRaft, no Docker): up, down, status, logs.",
        no_args_is_help=True,
    )
    cli.add_typer(broker_cli, name="broker")

    home_option = typer.Option(
        None, "--home", help="Broker directory: pid file, data, logs. [default: var/kafka]"
    )

    @broker_cli.command()
    def up(
        port: int | None = typer.Option(
            None, "--port", "-p", min=1, max=65535, help="Client port. [default: 9092]"
        ),
        controller_port: int | None = typer.Option(
            None, "--controller-port", min=1, max=65535, help="KRaft port. [default: port + 1]"
        ),
        home: Path | None = home_option,
        timeout: float = typer.Option(60.0, "--timeout", min=1, help="Seconds to wait for it."),
        fresh: bool = typer.Option(False, "--fresh", help="Delete its data first."),
    ) -> None:
        """Start the broker in the background and wait until it serves clients."""
        from edgeml.infra.kafka import broker

        settings = Settings()
        began = time.monotonic()
        info = broker.start(
            home or settings.broker_home,
            port or settings.broker_port,
            controller_port=controller_port,
            cache_dir=settings.kafka_cache,
            timeout_s=timeout,
            fresh=fresh,
            echo=lambda line: typer.echo(line, err=True),
        )
        typer.echo(
            f"Kafka {broker.KAFKA_VERSION} up on {info.bootstrap_servers} "
            f"(pid {info.pid}, ready in {time.monotonic() - began:.1f} s); "
            f"logs: {broker.log_path(info.home)}"
        )

    @broker_cli.command()
    def down(
        home: Path | None = home_option,
        timeout: float = typer.Option(30.0, "--timeout", min=1, help="Seconds before SIGKILL."),
    ) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after --timeout); a no-op when none runs."""
        from edgeml.infra.kafka import broker

        home = home or Settings().broker_home
        stopped = broker.stop(home, timeout_s=timeout)
        if stopped is None:
            typer.echo(f"No Kafka broker running from {home}.")
        else:
            typer.echo(f"Stopped Kafka broker (pid {stopped.pid}, port {stopped.port}).")

    @broker_cli.command()
    def status(home: Path | None = home_option) -> None:
        """Say whether the broker runs, with pid and port; exit 3 when it is stopped."""
        from edgeml.infra.kafka import broker

        info = broker.status(home or Settings().broker_home)
        if info.running:
            typer.echo(f"running  pid {info.pid}  port {info.port}  home {info.home}")
            return
        port = f"  port {info.port} (last run)" if info.port else ""
        typer.echo(f"stopped{port}  home {info.home}")
        raise typer.Exit(STOPPED_EXIT_CODE)

    @broker_cli.command()
    def logs(
        home: Path | None = home_option,
        lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many last lines."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    ) -> None:
        """Print the end of the broker's log; with -f keep following it (Ctrl-C stops)."""
        from edgeml.infra.kafka import broker

        path = broker.log_path(home or Settings().broker_home)
        if not path.is_file():
            raise broker.BrokerError(f"no broker log at {path}: start one with `edgeml broker up`")
        with path.open("rb") as log:
            for line in deque(log, maxlen=lines):
                typer.echo(line.decode(errors="replace"), nl=False)
            if follow:
                _follow(path, log)


def _follow(path: Path, log: BinaryIO) -> None:
    """Print lines appended to `path` until Ctrl-C, reopening it when the broker rolls it over."""
    try:
        while True:
            line = log.readline()
            if line:
                typer.echo(line.decode(errors="replace"), nl=False)
                continue
            with contextlib.suppress(OSError):
                if path.stat().st_ino != os.fstat(log.fileno()).st_ino:
                    log.close()
                    log = path.open("rb")
                    continue
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        log.close()
