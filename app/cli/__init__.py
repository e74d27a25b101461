"""The `edgeml` command line: one entry point whose sub-commands live one per module here."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from edgeml.app.cli import (
    broker,
    demo,
    edge,
    evaluate,
    models,
    optimize,
    replay,
    serve,
    simulate,
    tail,
    worker,
)

__all__ = ["cli", "main"]

cli = typer.Typer(
    name="edgeml",
    help="Edge ML streaming platform: broker, worker, simulator, replay, evaluation, models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.callback()
def _root() -> None:
    """Edge ML streaming platform."""


demo.add_to(cli)
broker.add_to(cli)
evaluate.add_to(cli)
replay.add_to(cli)
simulate.add_to(cli)
tail.add_to(cli)
worker.add_to(cli)
models.add_to(cli)
optimize.add_to(cli)
edge.add_to(cli)
serve.add_to(cli)


def main() -> None:
    """Console-script entry: a bad flag, argument or setting exits 2 with one line, our own
    errors exit with their `exit_code` (1 operational, 2 bad input) and one line; anything else
    is a bug and keeps its traceback."""
    from pydantic import ValidationError

    from edgeml.app.cli.errors import describe_validation_error
    from edgeml.app.errors import EdgeMLError

    restore = _quiet_kafka_clients()
    try:
        code = cli(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("edgeml: aborted", err=True)
        code = 130
    except typer.TyperException as exc:  # usage errors: bad flag, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "edgeml"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty when no arguments at all: the help page was already shown
            typer.echo(f"{command}: error: {message}", err=True)
        code = getattr(exc, "exit_code", 2)
    except EdgeMLError as exc:
        typer.echo(f"edgeml: error: {_one_line(str(exc))}", err=True)
        code = exc.exit_code
    except ValidationError as exc:  # `Settings()` from EDGEML_* variables, or a flag's value
        typer.echo(f"edgeml: error: {describe_validation_error(exc)}", err=True)
        code = 2
    except KeyboardInterrupt:
        code = 130
    finally:
        restore()
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> str:
    # a broker's or library's text inside our message may span lines; stderr gets one
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or "failed"


def _quiet_kafka_clients() -> Callable[[], None]:
    """The commands turn every broker failure into one line of their own; without this,
    aiokafka and kafka-python log each refused connection too (Python's last-resort handler
    writes them to stderr). `edgeml worker` sets its own floor (`app.process`). Returns what
    puts the levels back (tests call `main()` in-process)."""
    import logging

    loggers = [logging.getLogger(library) for library in ("aiokafka", "kafka")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)

    def restore() -> None:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)

    return restore
