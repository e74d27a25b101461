"""`edgeml models list|show|verify|promote|compare`: look at and manage the model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeml.app.cli.options import BOOTSTRAP_OPTION, settings_with
from edgeml.app.settings import Settings
from edgeml.topics.catalog import MODEL_REGISTRY

if TYPE_CHECKING:
    from edgeml.models.registry import ModelRegistry

__all__ = ["ROOT_OPTION", "add_to", "open_registry", "promote_and_announce"]

ROOT_OPTION = typer.Option(
    None,
    "--root",
    help="Registry root. [default: EDGEML_REGISTRY_ROOT, else models/artifacts under EDGEML_HOME "
    "or the working directory]",
)


def open_registry(root: Path | None, threads: int = 1) -> ModelRegistry:
    """The registry `--root` names, else the settings' `registry_root`; never the package
    folder unless that is the root (a checkout). The default root gets the shipped models
    copied in on first use (`Settings.seeds_registry`), so `optimize` and `promote` write
    next to a copy, not into site-packages."""
    from edgeml.models.registry import ModelRegistry

    if root is None:
        settings = Settings()
        root = settings.registry_root
        if settings.seeds_registry():
            from edgeml.models.shipped import seed_registry

            seed_registry(root)
    return ModelRegistry(root, threads=threads)


def add_to(cli: typer.Typer) -> None:
    models_cli = typer.Typer(
        help="The model registry: list, show, verify, promote.", no_args_is_help=True
    )
    cli.add_typer(models_cli, name="models")

    @models_cli.command("list")
    def list_(
        model_id: str | None = typer.Argument(None, help="Only this model."),
        root: Path | None = ROOT_OPTION,
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """Every registered version: kind, size, sha256, measured latency, promotion."""
        from rich.console import Console
        from rich.table import Table

        registry = open_registry(root)
        manifests = registry.manifests(model_id)
        promoted = {mid: registry.promoted_version(mid) for mid in {m.model_id for m in manifests}}
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "root": str(registry.root),
                        "models": [
                            {**m.to_dict(), "promoted": promoted[m.model_id] == m.version}
                            for m in manifests
                        ],
                    }
                )
            )
            return
        table = Table(title=f"models in {registry.root}")
        for name in ("model", "version", "", "kind", "task", "size", "sha256", "p50 µs",
                     "p99 µs", "parent", "created (UTC)"):  # fmt: skip
            table.add_column(name)
        for m in manifests:
            lat = m.latency
            table.add_row(
                m.model_id,
                m.version,
                "promoted" if promoted[m.model_id] == m.version else "",
                m.kind + (f"+{m.compression}" if m.compression else ""),
                m.task,
                f"{m.size_bytes:,}",
                m.sha256[:12],
                f"{lat.p50_us:.1f}" if lat else "",
                f"{lat.p99_us:.1f}" if lat else "",
                m.parent_version or "",
                m.created_at,
            )
        Console(width=None if sys.stdout.isatty() else 200).print(table)

    @models_cli.command()
    def show(
        model_id: str = typer.Argument(..., help="Model id."),
        version: str | None = typer.Option(None, "--version", "-v", help="[default: promoted]"),
        root: Path | None = ROOT_OPTION,
    ) -> None:
        """Print one version's manifest (JSON)."""
        manifest = open_registry(root).manifest(model_id, version)
        typer.echo(manifest.to_json().rstrip())

    @models_cli.command()
    def verify(
        model_id: str | None = typer.Argument(None, help="Model id. [default: every model]"),
        version: str | None = typer.Option(
            None, "--version", "-v", help="[default: promoted; every version without MODEL_ID]"
        ),
        root: Path | None = ROOT_OPTION,
        threads: int = typer.Option(1, "--threads", min=1, help="ONNX intra-op threads."),
    ) -> None:
        """Load and check artifacts: sha256, input schema, holdout; report memory per model."""
        from edgeml.app.errors import EdgeMLError
        from edgeml.models.manifest import RegistryError

        registry = open_registry(root, threads)
        targets = (
            [(model_id, version)]
            if model_id is not None
            else [(m.model_id, m.version) for m in registry.manifests()]
        )
        failed = 0
        for mid, ver in targets:
            try:
                registry.verify(mid, ver)
                loaded = registry.load(mid, ver)
            except EdgeMLError as exc:
                failed += 1
                typer.echo(f"FAIL {mid}@{ver or 'promoted'}: {exc}")
                continue
            mem = loaded.memory
            typer.echo(
                f"ok   {loaded.manifest.ref} sha256 {loaded.manifest.sha256[:12]} "
                f"file {mem.file_bytes:,} B, session {mem.session_create_ms:.1f} ms, "
                f"rss +{mem.rss_delta_bytes / 1024:,.0f} KiB"
            )
        if failed:
            raise RegistryError(f"{failed} of {len(targets)} model version(s) failed verification")

    @models_cli.command()
    def promote(
        model_id: str = typer.Argument(..., help="Model id."),
        version: str = typer.Argument(..., help="Version to promote."),
        root: Path | None = ROOT_OPTION,
        announce: bool = typer.Option(
            True,
            "--announce/--no-announce",
            help="Publish on the model-registry topic so running workers hot-swap to it.",
        ),
        bootstrap: str | None = BOOTSTRAP_OPTION,
    ) -> None:
        """Verify a version, make it the promoted one (atomic) and announce it to workers."""
        settings = settings_with(bootstrap)  # a bad --bootstrap fails before the promotion
        promote_and_announce(open_registry(root), model_id, version, settings, announce=announce)

    from edgeml.app.cli import compare

    compare.add_to(models_cli)


def promote_and_announce(
    registry: ModelRegistry, model_id: str, version: str, settings: Settings, *, announce: bool
) -> None:
    """Promote a version (verified, atomic) and tell running workers on `model-registry`."""
    before = registry.promoted_version(model_id)
    manifest = registry.promote(model_id, version)
    announcement = registry.announcement(model_id, version)
    typer.echo(f"promoted {manifest.ref} (was {before or 'none'})")
    if announce:
        from edgeml.app.kafka_admin import BrokerUnavailable, publish

        topic = settings.topic(MODEL_REGISTRY.name)
        try:
            publish(settings, topic, announcement.key, announcement.to_bytes())
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{manifest.ref} is promoted in {registry.root} but running workers were not "
                f"told ({exc}); rerun this command when the broker is up"
            ) from None
        typer.echo(f"announced on {topic}: {announcement.to_bytes().decode()}")
