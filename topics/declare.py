"""The worker's Faust topics and tables, declared from `topics.catalog` specs and a
`TopicLayout` (prefix, partitions, replication, store options; built by the app).

All topics are declared `internal=True` so Faust creates them with the catalog's partitions and
configs (creation is idempotent); values travel as raw bytes because validation must see the
original bytes of a malformed record to dead-letter it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from edgeml.topics import catalog
from edgeml.topics.catalog import TableSpec, TopicSpec
from edgeml.topics.layout import TopicLayout

__all__ = ["Tables", "Topics", "declare_tables", "declare_topic", "declare_topics"]


@dataclass(frozen=True)
class Topics:
    """Faust topic objects for one app, one per catalog entry the worker uses."""

    readings: faust.TopicT
    predictions: faust.TopicT
    alerts: faust.TopicT
    dlq: faust.TopicT
    late: faust.TopicT
    maintenance: faust.TopicT
    model_registry: faust.TopicT

    def outputs(self) -> tuple[faust.TopicT, ...]:
        return (self.predictions, self.alerts, self.dlq, self.late, self.model_registry)


@dataclass(frozen=True)
class Tables:
    """Changelog-backed state. `state_by_device`: device id -> serialized `DeviceState`."""

    state_by_device: faust.types.TableT


def declare_topic(app: faust.App, layout: TopicLayout, spec: TopicSpec) -> faust.TopicT:
    """One catalog topic as a Faust topic of raw bytes, created with the catalog's configs."""
    return app.topic(
        layout.topic_name(spec),
        key_serializer="raw",
        value_serializer="raw",
        partitions=layout.partitions_of(spec),
        replicas=layout.replication,
        config=dict(spec.config),
        internal=True,
    )


def declare_topics(app: faust.App, layout: TopicLayout) -> Topics:
    return Topics(
        readings=declare_topic(app, layout, catalog.READINGS),
        predictions=declare_topic(app, layout, catalog.PREDICTIONS),
        alerts=declare_topic(app, layout, catalog.ALERTS),
        dlq=declare_topic(app, layout, catalog.DLQ),
        late=declare_topic(app, layout, catalog.LATE),
        maintenance=declare_topic(app, layout, catalog.MAINTENANCE),
        model_registry=declare_topic(app, layout, catalog.MODEL_REGISTRY),
    )


def _raw_table(app: faust.App, layout: TopicLayout, spec: TableSpec) -> faust.types.TableT:
    # Keys and values are our own bytes (device id as the input is keyed; `DeviceState.to_bytes`).
    # `bytes` types are what make Faust pick the raw codec for the store *and* the changelog
    # topic; with other types it falls back to JSON, which cannot carry these values.
    return app.Table(
        spec.name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=layout.partitions,
        help=spec.description,
        options=dict(layout.table_options),
    )


def declare_tables(app: faust.App, layout: TopicLayout) -> Tables:
    return Tables(state_by_device=_raw_table(app, layout, catalog.STATE_BY_DEVICE))
