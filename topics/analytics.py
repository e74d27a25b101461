"""The analytics tables and their repartition topic (see `agents.analytics` for how they fill).

Four changelog-backed tables; keys are UTF-8 bytes, values bytes from `models.analytics`:

- `analytics-device-heads`: device id -> `KeyHead` (partition, watermark, labels, stored
  panes, running totals); co-partitioned with `sensor-readings`.
- `analytics-device-panes`: `<device>@<pane start>` -> `WindowStats`; written to the device's
  partition, so it moves with the device on a rebalance.
- `analytics-site-heads` / `analytics-site-panes`: the same for sites and the fleet (key
  `*`), co-partitioned with the `analytics-site-partials` topic they are folded from.
- `analytics-partials-outbox`: input partition -> the site partials its last commit flush
  sent (newline-joined wire forms); co-partitioned with `sensor-readings`, written with the
  device state, resent after a recovery (see `agents.analytics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from edgeml.topics import catalog
from edgeml.topics.catalog import SITE_PARTIALS, TableSpec
from edgeml.topics.declare import declare_topic
from edgeml.topics.layout import TopicLayout

__all__ = ["SITE_PARTIALS", "AnalyticsTables", "declare_analytics"]


@dataclass(frozen=True)
class AnalyticsTables:
    """The analytics tables of one app and the topic that repartitions site aggregates."""

    device_heads: faust.types.TableT
    device_panes: faust.types.TableT
    site_heads: faust.types.TableT
    site_panes: faust.types.TableT
    site_partials_topic: faust.TopicT
    partials_outbox: faust.types.TableT


def _table(app: faust.App, layout: TopicLayout, spec: TableSpec) -> faust.types.TableT:
    # Keys are bytes so the changelog (and Faust's table router, which hashes the changelog
    # topic's serialized key) sees exactly the bytes the producers keyed the input with: a
    # `str` key type would be JSON-quoted there and hash to another partition.
    return app.Table(
        spec.name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="raw"),
        partitions=layout.partitions,
        help=spec.description,
        options=dict(layout.table_options),
    )


def declare_analytics(app: faust.App, layout: TopicLayout) -> AnalyticsTables:
    return AnalyticsTables(
        device_heads=_table(app, layout, catalog.ANALYTICS_DEVICE_HEADS),
        device_panes=_table(app, layout, catalog.ANALYTICS_DEVICE_PANES),
        site_heads=_table(app, layout, catalog.ANALYTICS_SITE_HEADS),
        site_panes=_table(app, layout, catalog.ANALYTICS_SITE_PANES),
        site_partials_topic=declare_topic(app, layout, SITE_PARTIALS),
        partials_outbox=_table(app, layout, catalog.ANALYTICS_PARTIALS_OUTBOX),
    )
