"""What several `edgeml` commands share: the `--bootstrap` option, and counted nouns.

Every command that talks to Kafka (`simulate`, `replay`, `tail`, `evaluate`, `models promote`)
takes `--bootstrap HOST:PORT[,HOST:PORT...]`, which wins over `EDGEML_BOOTSTRAP_SERVERS` for
that one run; everything else still comes from the `EDGEML_*` settings.
"""

from __future__ import annotations

import typer

from edgeml.app.settings import Settings

__all__ = ["BOOTSTRAP_HELP", "BOOTSTRAP_OPTION", "counted", "settings_with"]

BOOTSTRAP_HELP = "Kafka bootstrap servers (default: EDGEML_BOOTSTRAP_SERVERS)."
BOOTSTRAP_OPTION = typer.Option(None, "--bootstrap", metavar="HOST:PORT", help=BOOTSTRAP_HELP)


def settings_with(bootstrap: str | None) -> Settings:
    """The settings, with `--bootstrap` (when given) in place of EDGEML_BOOTSTRAP_SERVERS."""
    if bootstrap is None:
        return Settings()
    if not bootstrap.strip():
        raise typer.BadParameter("empty; give HOST:PORT", param_hint="--bootstrap")
    return Settings(bootstrap_servers=bootstrap.strip())


def counted(n: int, noun: str) -> str:
    """`1 device`, `2 devices`, `1,200 readings` (regular plurals are all the CLI needs).

    >>> counted(1, "file"), counted(0, "file"), counted(12000, "reading")
    ('1 file', '0 files', '12,000 readings')
    """
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
