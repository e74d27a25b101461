"""`edgeml edge keygen | sign | publish`: signed model versions for edge agents.

`keygen` makes the Ed25519 key pair; `sign` writes a version's golden set (`golden.npz`, from its
holdout and the verified model) and signs its manifest and golden set; `publish` sends the signed
version as one bundle on the compacted `model-artifacts` topic (key `model_id@version`) and then,
unless `--no-announce`, announces it on `model-registry`, which edge agents (and workers) follow.
The bundle goes first: an agent that reads the announcement can always find its bytes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgeml.app.cli.options import BOOTSTRAP_OPTION, settings_with
from edgeml.app.settings import Settings

__all__ = ["ARTIFACTS_TOPIC", "add_to", "publish_bundle"]

ARTIFACTS_TOPIC = "model-artifacts"
_MAX_BUNDLE_BYTES = 8 * 2**20  # = EdgeSettings.model_max_bundle_bytes' default


def add_to(edge_cli: typer.Typer) -> None:
    @edge_cli.command("keygen")
    def keygen(
        out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for the two PEM files."),  # noqa: B008
    ) -> None:
        """Make an Ed25519 key pair for model signatures: edge-signing.key (private, 0600, stays
        where models are promoted) and edge-signing.pub (for EDGEML_EDGE_MODEL_PUBLIC_KEY)."""
        import os

        from edgeml.edge.signing import generate_keypair

        private_path, public_path = out / "edge-signing.key", out / "edge-signing.pub"
        for path in (private_path, public_path):
            if path.exists():
                raise typer.BadParameter(f"{path} exists; not overwritten", param_hint="--out")
        private, public = generate_keypair()
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private)
        public_path.write_bytes(public)
        typer.echo(f"wrote {private_path} and {public_path}")

    @edge_cli.command("sign")
    def sign(
        version_dir: Path = typer.Argument(  # noqa: B008
            ..., help="A registered version folder (its manifest.json)."
        ),
        key: Path = typer.Option(..., "--key", "-k", help="The private key (PEM)."),  # noqa: B008
    ) -> None:
        """Sign a model version for edge agents: writes its golden set (golden.npz, when it has
        a holdout) and manifest.json.sig over the manifest (which holds the model's sha256) and
        the golden set."""
        from edgeml.edge.signing import MANIFEST, sign_version, write_golden

        if not (version_dir / MANIFEST).is_file():
            raise typer.BadParameter(f"{version_dir} has no {MANIFEST}", param_hint="VERSION_DIR")
        if not key.is_file():
            raise typer.BadParameter(f"{key} is not a readable file", param_hint="--key")
        golden = write_golden(version_dir)
        if golden is not None:
            typer.echo(f"wrote {golden}")
        typer.echo(f"wrote {sign_version(version_dir, key.read_bytes())}")

    @edge_cli.command("publish")
    def publish(
        version_dir: Path = typer.Argument(  # noqa: B008
            ..., help="A signed version folder (`edgeml edge sign`)."
        ),
        announce: bool = typer.Option(
            True, "--announce/--no-announce", help="Also announce it on model-registry."
        ),
        bootstrap: str | None = BOOTSTRAP_OPTION,
    ) -> None:
        """Publish a signed model version for edge agents (module docstring)."""
        from edgeml.edge.signing import GOLDEN, MANIFEST, SIGNATURE

        for name in (MANIFEST, SIGNATURE, GOLDEN):
            if not (version_dir / name).is_file():
                raise typer.BadParameter(
                    f"{version_dir} has no {name}: sign it first (edgeml edge sign)",
                    param_hint="VERSION_DIR",
                )
        for line in publish_bundle(settings_with(bootstrap), version_dir, announce=announce):
            typer.echo(line)


def publish_bundle(settings: Settings, version_dir: Path, *, announce: bool = True) -> list[str]:
    """Send `version_dir`'s bundle (then its announcement); returns what was done, as lines."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from edgeml.app.kafka_admin import BrokerUnavailable, ensure_topics, publish
    from edgeml.edge.bundle import pack_version
    from edgeml.edge.signing import MANIFEST
    from edgeml.models.manifest import ModelAnnouncement, ModelManifest
    from edgeml.topics.catalog import MODEL_REGISTRY, TopicSpec

    key, bundle = pack_version(version_dir)
    if len(bundle) > _MAX_BUNDLE_BYTES:
        raise BrokerUnavailable(f"the bundle is {len(bundle):,} bytes, over {_MAX_BUNDLE_BYTES:,}")
    spec = TopicSpec(
        ARTIFACTS_TOPIC,
        "Signed model bundles for edge agents, key = model_id@version; compacted.",
        partitions=1,
        config={"cleanup.policy": "compact", "max.message.bytes": str(_MAX_BUNDLE_BYTES + 4096)},
    )
    ensure_topics(settings, [spec])
    topic = settings.topic(ARTIFACTS_TOPIC)
    config = settings.producer_config()
    try:
        producer = KafkaProducer(
            bootstrap_servers=config.pop("bootstrap_servers"),
            max_request_size=_MAX_BUNDLE_BYTES + 4096,
            **{k: v for k, v in config.items() if k not in ("linger_ms", "max_request_size")},
        )
        try:
            producer.send(topic, key=key, value=bundle).get(timeout=30)
        finally:
            producer.close(timeout=15)
    except KafkaError as exc:
        raise BrokerUnavailable(f"could not publish to {topic}: {exc}") from None
    lines = [f"published {key.decode()} ({len(bundle):,} bytes) on {topic}"]
    if announce:
        manifest = ModelManifest.from_json((version_dir / MANIFEST).read_text())
        announcement = ModelAnnouncement.of(manifest)
        registry_topic = settings.topic(MODEL_REGISTRY.name)
        publish(settings, registry_topic, announcement.key, announcement.to_bytes())
        lines.append(f"announced on {registry_topic}: {announcement.to_bytes().decode()}")
    return lines
