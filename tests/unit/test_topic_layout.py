"""`TopicLayout`: the narrow config the topic and table declarations take instead of `Settings`."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import faust
import pytest

import edgeml.topics.layout
from edgeml.app.settings import Settings
from edgeml.topics import catalog
from edgeml.topics.analytics import declare_analytics
from edgeml.topics.declare import declare_tables, declare_topics
from edgeml.topics.layout import TopicLayout


def test_settings_build_the_layout_from_their_own_fields(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(
        topic_prefix="p7-",
        topic_partitions=6,
        topic_replication=3,
        rocksdb_write_buffer_bytes=3 * 2**20,
        rocksdb_block_cache_bytes=2**20,
    )
    layout = settings.topic_layout()
    assert (layout.prefix, layout.partitions, layout.replication) == ("p7-", 6, 3)
    assert dict(layout.table_options) == settings.table_options()
    # the same broker-side names as the app's own helper
    assert all(layout.topic_name(spec) == settings.topic(spec.name) for spec in catalog.ALL_TOPICS)


def test_the_declarations_follow_the_layout() -> None:
    layout = TopicLayout(prefix="lay-", partitions=5, replication=2, table_options={"x": 1})
    app = faust.App("layout-test", store="memory://", autodiscover=False)
    topics = declare_topics(app, layout)
    tables = declare_tables(app, layout)
    analytics = declare_analytics(app, layout)

    assert topics.readings.get_topic_name() == "lay-sensor-readings"
    assert (topics.readings.partitions, topics.readings.replicas) == (5, 2)
    assert topics.model_registry.partitions == 1  # fixed by the catalog, not the layout
    assert analytics.site_partials_topic.get_topic_name() == "lay-analytics-site-partials"
    assert analytics.site_partials_topic.partitions == 5
    # tables: unprefixed catalog names, the layout's partitions and store options
    declared = [tables.state_by_device, analytics.device_heads, analytics.site_panes]
    assert [t.name for t in declared] == [
        catalog.STATE_BY_DEVICE.name,
        catalog.ANALYTICS_DEVICE_HEADS.name,
        catalog.ANALYTICS_SITE_PANES.name,
    ]
    assert all(t.partitions == 5 and t.options == {"x": 1} for t in declared)
    assert tables.state_by_device.changelog_topic.get_topic_name() == (
        catalog.STATE_BY_DEVICE.changelog_topic("layout-test")
    )


def test_the_layout_is_a_read_only_value() -> None:
    options = {"write_buffer_size": 1}
    layout = TopicLayout(table_options=options)
    options["write_buffer_size"] = 2  # the caller's dict changing later does not reach it
    assert layout.table_options == {"write_buffer_size": 1}
    with pytest.raises(TypeError):
        layout.table_options["write_buffer_size"] = 3  # type: ignore[index]
    assert layout == TopicLayout(table_options={"write_buffer_size": 1})
    assert hash(layout) == hash(TopicLayout())  # options are left out of the hash only


@pytest.mark.parametrize(("partitions", "replication"), [(0, 1), (1, 0)])
def test_a_layout_without_partitions_or_replicas_is_refused(
    partitions: int, replication: int
) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        TopicLayout(partitions=partitions, replication=replication)


def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(edgeml.topics.layout)
    assert result.attempted > 0 and result.failed == 0
