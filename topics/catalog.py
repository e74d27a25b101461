"""Every broker-backed name the platform uses, with partitions and configs, in one place.

Faust-free: the CLI, the simulator and tests create and address topics from these specs;
`topics.declare` turns them into Faust topic objects for the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ALERTS",
    "ALL_TOPICS",
    "DLQ",
    "GROUND_TRUTH",
    "LATE",
    "MAINTENANCE",
    "MODEL_REGISTRY",
    "PREDICTIONS",
    "READINGS",
    "SITE_PARTIALS",
    "TopicSpec",
]

_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic's name and broker configs. `partitions=None` takes `Settings.topic_partitions`."""

    name: str
    description: str
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)


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
    SITE_PARTIALS,
)
