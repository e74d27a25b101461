"""The worker's Faust topics and tables, declared from `topics.catalog` specs.

All topics are declared `internal=True` so Faust creates them with the catalog's partitions and
configs (creation is idempotent); values travel as raw bytes because validation must see the
original bytes of a malformed record to dead-letter it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from app.settings import Settings
from topics import catalog
from topics.catalog import TopicSpec

__all__ = ["Tables", "Topics", "declare_tables", "declare_topics"]


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


def _topic(app: faust.App, settings: Settings, spec: TopicSpec) -> faust.TopicT:
    return app.topic(
        settings.topic(spec.name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions or settings.topic_partitions,
        replicas=settings.topic_replication,
        config=dict(spec.config),
        internal=True,
    )


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    return Topics(
        readings=_topic(app, settings, catalog.READINGS),
        predictions=_topic(app, settings, catalog.PREDICTIONS),
        alerts=_topic(app, settings, catalog.ALERTS),
        dlq=_topic(app, settings, catalog.DLQ),
        late=_topic(app, settings, catalog.LATE),
        maintenance=_topic(app, settings, catalog.MAINTENANCE),
        model_registry=_topic(app, settings, catalog.MODEL_REGISTRY),
    )


def _raw_table(app: faust.App, settings: Settings, name: str, help: str) -> faust.types.TableT:
    # Keys and values are our own bytes (device id as the input is keyed; `DeviceState.to_bytes`).
    # `bytes` types are what make Faust pick the raw codec for the store *and* the changelog
    # topic; with other types it falls back to JSON, which cannot carry these values.
    return app.Table(
        name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        help=help,
        options=settings.table_options(),
    )


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    return Tables(
        state_by_device=_raw_table(
            app,
            settings,
            "state-by-device",
            "Per-device feature windows, detector and alert state.",
        ),
    )
