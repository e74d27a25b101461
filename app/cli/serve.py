"""`edgeml serve`: the registry's promoted models over the Open Inference Protocol v2 REST."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeml.app.cli.models import ROOT_OPTION, open_registry
from edgeml.app.cli.providers import parse_providers, providers_option, short_names

__all__ = ["add_to"]


def add_to(cli: typer.Typer) -> None:
    @cli.command()
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Bind address."),
        port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port."),
        model: list[str] = typer.Option(  # noqa: B008 - typer declares options this way
            [], "--model", "-m", help="Model id to serve (repeatable). [default: every promoted]"
        ),
        replicas: int = typer.Option(2, "--replicas", min=1, help="In-process replicas each."),
        strategy: str = typer.Option(
            "least_loaded", "--strategy", help="Replica selection (see docs/inference.md)."
        ),
        timeout_s: float = typer.Option(1.0, "--timeout-s", min=0.001, help="Per-call timeout."),
        deadline_s: float = typer.Option(
            3.0, "--deadline-s", min=0.001, help="Per-request deadline, failovers included."
        ),
        probe_interval_s: float = typer.Option(
            10.0, "--probe-interval-s", min=0.0, help="Golden-set probe interval (0: at start)."
        ),
        providers: list[str] = providers_option(),  # noqa: B008
        root: Path | None = ROOT_OPTION,
    ) -> None:
        """Serve models over OIP v2 (KServe v2 / Triton REST); token: EDGEML_WEB_TOKEN."""
        wished = parse_providers(providers)
        from aiohttp import web

        from edgeml.app.serve import build_server
        from edgeml.app.settings import Settings
        from edgeml.models.inference import STRATEGIES, TaskConfig, strategy_named

        if strategy not in STRATEGIES or strategy == "weighted":
            choices = ", ".join(s for s in STRATEGIES if s != "weighted")
            raise typer.BadParameter(
                f"{strategy!r}; choose one of: {choices}", param_hint="--strategy"
            )
        settings = Settings()
        registry = open_registry(root, threads=settings.onnx_threads)
        config = TaskConfig(
            strategy=strategy_named(strategy),
            timeout_s=timeout_s,
            deadline_s=deadline_s,
            probe_interval_s=probe_interval_s,
        )
        token = settings.web_token.get_secret_value() if settings.web_token else None
        server = build_server(
            registry, model, replicas=replicas, config=config, token=token, providers=wished
        )
        names = ", ".join(
            f"{m.name}@{m.version} on {short_names(m.providers)}" for m in server.models.values()
        )

        def ready(_message: str) -> None:
            typer.echo(f"edgeml serve: listening on http://{host}:{port} ({names})")

        try:
            web.run_app(server.app(), host=host, port=port, print=ready, access_log=None)
        except OSError as exc:  # the port is taken, or the address is not this machine's
            from edgeml.app.errors import EdgeMLError

            raise EdgeMLError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
