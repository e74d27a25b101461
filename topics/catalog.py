"""Every broker-backed name the platform uses, with partitions and configs, in one place.

Faust-free: the CLI, the simulator and tests create and address topics from these specs;
`topics.declare` and `topics.analytics` turn them into Faust topics and tables for the worker.
Topics: `ALL_TOPICS` (what `edgeml worker` pre-creates); tables: `ALL_TABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ALERTS",
    "ALL_TABLES",
    "ALL_TOPICS",
    "ANALYTICS_DEVICE_HEADS",
    "ANALYTICS_DEVICE_PANES",
    "ANALYTICS_PARTIALS_OUTBOX",
    "ANALYTICS_SITE_HEADS",
    "ANALYTICS_SITE_PANES",
    "DLQ",
    "GROUND_TRUTH",
    "LATE",
    "MAINTENANCE",
    "MODEL_COMPARISONS",
    "MODEL_REGISTRY",
    "PREDICTIONS",
    "READINGS",
    "SITE_PARTIALS",
    "STATE_BY_DEVICE",
    "TableSpec",
    "TopicSpec",
]

_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name and broker configs. `partitions=None` takes the deployment's default
    (`TopicLayout.partitions`, from `Settings.topic_partitions`)."""

    name: str
    description: str
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A changelog-backed table's name. Unlike topics, table names take no prefix: Faust
    already scopes a table's changelog topic by the app id, and renaming it would orphan a
    deployment's stored state."""

    name: str
    description: str

    def changelog_topic(self, app_id: str) -> str:
        """The changelog topic Faust creates for this table in app `app_id` (Faust's naming)."""
        return f"{app_id}-{self.name}-changelog"


READINGS = TopicSpec(
    "sensor-readings",
    "Input: one reading or a batch envelope per message, key = device id.",
    config={"retention.ms": _WEEK_MS},
)
PREDICTIONS = TopicSpec(
    "predictions",
    "One prediction per valid reading (batched like the readings arrived), key = device id.",
    config={"retention.ms": _WEEK_MS},
)
ALERTS = TopicSpec(
    "anomaly-alerts",
    "Alert lifecycle events: one `open` and one `resolved` per incident, key = device id.",
    config={"retention.ms": _MONTH_MS},
)
DLQ = TopicSpec(
    "sensor-readings.dlq",
    "Dead letters: original bytes, with origin and reason in headers.",
    config={"retention.ms": _MONTH_MS},
)
LATE = TopicSpec(
    "sensor-readings.late",
    "Readings that arrived after the window grace: scored (marked late), and copied here.",
    config={"retention.ms": _WEEK_MS},
)
MAINTENANCE = TopicSpec(
    "maintenance-events",
    "Delayed ground truth from the field (failure / repair), key = device id.",
    config={"retention.ms": _MONTH_MS},
)
GROUND_TRUTH = TopicSpec(
    "ground-truth",
    "Simulator incident windows, for `edgeml evaluate` only; the worker never reads it.",
    partitions=1,
    config={"retention.ms": _MONTH_MS},
)
MODEL_REGISTRY = TopicSpec(
    "model-registry",
    "Promoted model versions, key = model id; compacted so the latest per model survives.",
    partitions=1,
    config={"cleanup.policy": "compact"},
)
MODEL_COMPARISONS = TopicSpec(
    "model-comparisons",
    "Shadow scoring: champion vs challenger scores and latencies per scored batch, key ="
    " challenger ref (`ModelComparison`); read by `edgeml models compare --from-topic`.",
    config={"retention.ms": _WEEK_MS},
)
SITE_PARTIALS = TopicSpec(
    "analytics-site-partials",
    "Internal: per-commit partial aggregates keyed by site (and `*` for the fleet), the input of"
    " `aggregate_sites`. Pre-created with the others: a worker whose consumer took its metadata"
    " before Faust created it ignored it for the next 5 min (no fleet totals, measured).",
    config={"retention.ms": str(24 * 3600 * 1000)},
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    READINGS,
    PREDICTIONS,
    ALERTS,
    DLQ,
    LATE,
    MAINTENANCE,
    GROUND_TRUTH,
    MODEL_REGISTRY,
    MODEL_COMPARISONS,
    SITE_PARTIALS,
)


STATE_BY_DEVICE = TableSpec(
    "state-by-device",
    "Per-device feature windows, detector and alert state (`DeviceState` bytes).",
)
ANALYTICS_DEVICE_HEADS = TableSpec(
    "analytics-device-heads", "Per device: panes kept, totals, labels."
)
ANALYTICS_DEVICE_PANES = TableSpec(
    "analytics-device-panes", "Per device and pane: window aggregates."
)
ANALYTICS_SITE_HEADS = TableSpec("analytics-site-heads", "Per site and the fleet: panes, totals.")
ANALYTICS_SITE_PANES = TableSpec("analytics-site-panes", "Per site/fleet and pane: aggregates.")
ANALYTICS_PARTIALS_OUTBOX = TableSpec(
    "analytics-partials-outbox",
    "Per input partition: the site partials of its last commit flush, resent after a restart.",
)

ALL_TABLES: tuple[TableSpec, ...] = (
    STATE_BY_DEVICE,
    ANALYTICS_DEVICE_HEADS,
    ANALYTICS_DEVICE_PANES,
    ANALYTICS_SITE_HEADS,
    ANALYTICS_SITE_PANES,
    ANALYTICS_PARTIALS_OUTBOX,
)
