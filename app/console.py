"""The `edgeml` console script: the CLI, or one line saying which extra to install.

The wheel's core install (models and records only, for an edge box) also gets the `edgeml`
script; before this entry it died with a `ModuleNotFoundError` traceback for `typer`.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

# The top-level modules the `cli` extra brings (its own and the `worker` extra's).
CLI_EXTRA_MODULES = frozenset(
    {"typer", "rich", "click", "faust", "mode", "aiokafka", "kafka", "prometheus_client",
     "pydantic", "pydantic_settings"}
)  # fmt: skip


def main() -> None:
    try:
        from edgeml.app.cli import main as cli_main
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLI_EXTRA_MODULES:
            raise  # not a missing extra: a bug, keep its traceback
        print(
            f"edgeml: error: the command line needs the 'cli' extra (module {missing!r} is not"
            " installed): pip install 'edgeml[cli]'",
            file=sys.stderr,
        )
        sys.exit(2)
    cli_main()
