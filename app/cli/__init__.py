"""The `edgeml` command line: one entry point whose sub-commands live one per module here."""

from __future__ import annotations

import sys

import typer

from app.cli import worker

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


worker.add_to(cli)


def main() -> None:
    """Console-script entry: bad flags exit 2 with one line, our own errors exit 1 with one line."""
    from app.errors import EdgeMLError

    try:
        cli()
    except EdgeMLError as exc:
        typer.echo(f"edgeml: error: {exc}", err=True)
        sys.exit(1)
