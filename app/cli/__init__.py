"""The `edgeml` command line: one entry point whose sub-commands live one per module here."""

from __future__ import annotations

import sys

import typer

from app.cli import (
    broker,
    demo,
    evaluate,
    models,
    optimize,
    replay,
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


def main() -> None:
    """Console-script entry: a bad flag or argument exits 2 with one line, our own errors exit 1
    with one line; anything else is a bug and keeps its traceback."""
    from app.errors import EdgeMLError

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
        typer.echo(f"edgeml: error: {exc}", err=True)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
