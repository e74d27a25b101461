"""Control-record publishing without a broker: a clear error within the stated timeout."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeml.app import kafka_admin
from edgeml.app.cli import cli
from edgeml.app.kafka_admin import BrokerUnavailable, ensure_topics, publish
from edgeml.app.settings import Settings
from edgeml.models.optimize import zoo
from edgeml.models.registry import ModelRegistry
from edgeml.topics.catalog import MODEL_REGISTRY


def test_ensure_topics_names_the_unreachable_broker(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    with pytest.raises(
        BrokerUnavailable, match=f"cannot reach Kafka at {settings.bootstrap_servers}"
    ):
        ensure_topics(settings, timeout_s=0.5)


def test_publish_refuses_instead_of_dropping(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    with pytest.raises(BrokerUnavailable, match=settings.bootstrap_servers):
        publish(settings, settings.topic(MODEL_REGISTRY.name), b"k", b"v", timeout_s=0.5)


def test_promote_without_broker_says_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    demo = zoo.train("mlp-tiny", n_train=300, n_holdout=200)
    zoo.register_demo(registry, demo, "mlp")
    monkeypatch.setattr(kafka_admin, "publish", functools.partial(publish, timeout_s=0.5))
    result = CliRunner().invoke(
        cli, ["models", "promote", "mlp", "1", "--root", str(registry.root)]
    )
    assert isinstance(result.exception, BrokerUnavailable)
    message = str(result.exception)
    assert "mlp@1 is promoted" in message and "were not told" in message
    assert registry.promoted_version("mlp") == "1"


def test_worker_refuses_to_start_without_its_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgeml worker` creates the platform's topics before Faust subscribes; without a broker
    it stops there with the admin error instead of starting a worker that consumes nothing."""
    monkeypatch.setattr(
        kafka_admin, "ensure_topics", functools.partial(ensure_topics, timeout_s=0.5)
    )
    result = CliRunner().invoke(cli, ["worker"])
    assert isinstance(result.exception, BrokerUnavailable)
    assert "cannot reach Kafka at 127.0.0.1:9" in str(result.exception)
