"""`ensure_topics` with the tables creates their changelogs as Faust would: the worker calls it
before Faust starts, so no source topic exists before its changelog (the PartitionsMismatch
crash of a first commit)."""

from __future__ import annotations

from collections.abc import Callable

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from edgeml.app.kafka_admin import ensure_topics
from edgeml.app.settings import Settings
from edgeml.topics.catalog import ALL_TABLES, ALL_TOPICS


def test_the_worker_setup_creates_every_changelog_compacted(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(topic_partitions=3)
    created = set(ensure_topics(settings, tables=ALL_TABLES))
    changelogs = {table.changelog_topic(settings.app_id) for table in ALL_TABLES}
    assert changelogs <= created
    assert {settings.topic(spec.name) for spec in ALL_TOPICS} <= created
    assert ensure_topics(settings, tables=ALL_TABLES) == []  # idempotent

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        described = admin.describe_topics(sorted(changelogs))
        assert {t["name"]: len(t["partitions"]) for t in described} == dict.fromkeys(changelogs, 3)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(changelogs)]
        )["topic"]
        policies = {name: entries["cleanup.policy"]["value"] for name, entries in configs.items()}
        assert policies == dict.fromkeys(changelogs, "compact")
    finally:
        admin.close()
