"""`edgeml worker`: run a Faust worker (the same as `faust -A edgeml.app.main worker`)."""

from __future__ import annotations

import sys

import typer

__all__ = ["add_to"]

# Faust's own spellings on the right; the usual names are accepted too.
_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "crit": "crit",
    "critical": "crit",
}


def add_to(cli: typer.Typer) -> None:
    @cli.command(
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def worker(
        ctx: typer.Context,
        loglevel: str = typer.Option("info", "--loglevel", "-l", help="Log level."),
    ) -> None:
        """Run a worker; extra options are passed to Faust's `worker` command."""
        from faust.cli.faust import cli as faust_cli

        level = _LEVELS.get(loglevel.lower())
        if level is None:
            choices = ", ".join(sorted(_LEVELS))
            raise typer.BadParameter(f"{loglevel!r}; choose one of: {choices}", param_hint="-l")
        # The platform's topics exist before Faust's consumer takes its first metadata: one it
        # lacks there ("Ignoring missing topic") is only consumed after the next refresh, 5 min
        # later, even when Faust itself creates the topic a moment before.
        from edgeml.app.kafka_admin import ensure_topics
        from edgeml.app.settings import Settings
        from edgeml.topics.catalog import ALL_TABLES

        ensure_topics(Settings(), tables=ALL_TABLES)
        sys.argv = ["faust", "-A", "edgeml.app.main", "worker", "-l", level, *ctx.args]
        faust_cli()
