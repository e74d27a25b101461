"""The one catalog: every topic a worker's agents consume is pre-created by `ensure_topics`."""

from __future__ import annotations

from collections.abc import Callable

from edgeml.app.factory import create_app
from edgeml.app.settings import Settings
from edgeml.topics.catalog import ALL_TOPICS


def test_every_agent_input_is_in_the_catalog(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    app = create_app(settings)
    catalog = {settings.topic(spec.name) for spec in ALL_TOPICS}
    inputs = {
        agent.channel.get_topic_name()  # type: ignore[attr-defined]
        for agent in app.agents.values()
    }
    assert settings.topic("analytics-site-partials") in inputs
    assert inputs <= catalog, f"consumed but never pre-created: {sorted(inputs - catalog)}"
