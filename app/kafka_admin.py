"""Create the platform's topics on the broker if they are missing (idempotent).

`ensure_topics(settings)` is what `edgeml simulate`, `edgeml replay` and the worker call before
producing; it creates every spec in `topics.catalog.ALL_TOPICS` with its partitions (or
`Settings.topic_partitions`) and configs, and leaves existing topics alone. With `tables`
(what the worker passes) it also creates the tables' changelog topics, as Faust would.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeml.app.errors import EdgeMLError
from edgeml.app.settings import Settings
from edgeml.topics.catalog import ALL_TOPICS, TableSpec, TopicSpec

__all__ = ["BrokerUnavailable", "ensure_topics", "publish"]


_CHANGELOG = {"cleanup.policy": "compact"}  # what Faust gives a (non-windowed) table changelog


class BrokerUnavailable(EdgeMLError):
    """The Kafka broker could not be reached or refused an admin request."""


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    *,
    tables: Iterable[TableSpec] = (),
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the missing topics; return the broker-side names that were created.

    A table's changelog is created here too when it is in `tables`: Faust creates changelogs
    at start, but a pre-created source topic whose changelog the consumer's metadata did not
    list yet crashed a worker's first commit with `PartitionsMismatch` ("the changelog topic
    has 0 partitions"; seen in a two-worker start on a loaded machine).
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            **settings.kafka_client_config(),
            client_id=f"{settings.app_id}-admin",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from None
    try:
        existing = set(admin.list_topics())
        wanted = [
            (settings.topic(spec.name), spec.partitions or settings.topic_partitions, spec.config)
            for spec in specs
        ] + [
            (table.changelog_topic(settings.app_id), settings.topic_partitions, _CHANGELOG)
            for table in tables
        ]
        missing = [
            NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=settings.topic_replication,
                topic_configs=dict(config),
            )
            for name, partitions, config in wanted
            if name not in existing
        ]
        created: list[str] = []
        for topic in missing:  # one by one: a concurrent creator only costs us that topic
            try:
                admin.create_topics([topic], timeout_ms=timeout_ms, wait_for_metadata=True)
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"topic setup on {settings.bootstrap_servers} failed: {exc}"
        ) from None
    finally:
        admin.close()


def publish(
    settings: Settings, topic: str, key: bytes, value: bytes, *, timeout_s: float = 15.0
) -> None:
    """Send one record durably (acks=all) and wait for it: for control records such as model
    announcements, where a lost send must be an error, not a log line."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    ensure_topics(
        settings,
        [spec for spec in ALL_TOPICS if settings.topic(spec.name) == topic],
        timeout_s=timeout_s,
    )
    config = settings.producer_config()
    try:
        producer = KafkaProducer(
            bootstrap_servers=config.pop("bootstrap_servers"),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **{k: v for k, v in config.items() if k != "linger_ms"},
        )
        try:
            producer.send(topic, key=key, value=value).get(timeout=timeout_s)
        finally:
            producer.close(timeout=timeout_s)
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"could not publish to {topic} at {settings.bootstrap_servers}: {exc}"
        ) from None
