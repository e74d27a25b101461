"""The agent's counters and their Prometheus text exposition (`/metrics`).

Hand-written exposition (format 0.0.4) rather than `prometheus_client`: the edge extra stays
small, and the outbox figures are read from the outbox when scraped, so they are never stale.
Drops and sent counts come from the outbox's persisted counters: they survive restarts (a
counter that only grows across restarts is what Prometheus' `rate()` expects of a `_total`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeml.edge.outbox import DROP_REASONS, STREAMS, Outbox

__all__ = ["REFUSE_REASONS", "EdgeMetrics", "render"]

# why a model version is not served (`edge.updates`, `edge.agent.load_failure_model`)
REFUSE_REASONS = ("unsigned", "bad_signature", "tampered", "invalid", "golden")


@dataclass(slots=True)
class EdgeMetrics:
    """This process's counters and gauges (the outbox keeps the persisted ones)."""

    readings_scored: int = 0
    batches: int = 0
    dead_letters: int = 0
    redelivered: int = 0
    alerts_raised: int = 0
    commit_errors: int = 0
    sync_errors: int = 0
    sync_rate_rows_per_s: float = 0.0
    broker_connected: bool = False
    webhook_failures: int = 0
    last_batch_at: float = 0.0
    models_refused: dict[str, int] = field(default_factory=dict)  # reason -> count
    model_swaps: int = 0  # versions swapped in (health window started)
    model_kept: int = 0  # ... that passed their health window
    model_rollbacks: int = 0  # ... that failed it and were rolled back
    started_at: float = field(default_factory=time.time)


def render(
    metrics: EdgeMetrics,
    outbox: Outbox,
    agent_id: str,
    model_version: str,
    clock: Callable[[], float] = time.time,
) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {_number(value)}")

    def stream(s: str) -> str:
        return f'{{stream="{s}"}}'

    metric(
        "edgeml_edge_info", "gauge", "The agent and the model it scores with.",
        [(f'{{agent_id="{_escape(agent_id)}",model_version="{_escape(model_version)}"}}', 1)],
    )  # fmt: skip
    metric("edgeml_edge_readings_scored_total", "counter", "Readings scored by this process.",
           [("", metrics.readings_scored)])  # fmt: skip
    metric("edgeml_edge_dead_letters_total", "counter", "Invalid readings/messages (logged).",
           [("", metrics.dead_letters)])  # fmt: skip
    metric("edgeml_edge_alerts_total", "counter", "Local alert events raised.",
           [("", metrics.alerts_raised)])  # fmt: skip
    metric("edgeml_edge_commit_errors_total", "counter", "Batch transactions rolled back.",
           [("", metrics.commit_errors)])  # fmt: skip
    metric(
        "edgeml_edge_backlog_rows", "gauge", "Unsent outbox rows.",
        [(stream(s), outbox.rows[s]) for s in STREAMS],
    )  # fmt: skip
    metric(
        "edgeml_edge_backlog_bytes", "gauge", "Unsent outbox record bytes.",
        [(stream(s), outbox.bytes[s]) for s in STREAMS],
    )  # fmt: skip
    metric("edgeml_edge_outbox_max_bytes", "gauge", "The outbox's byte bound.",
           [("", outbox.limits.max_bytes)])  # fmt: skip
    ages = [(s, outbox.oldest_age_s(s)) for s in STREAMS]
    metric(
        "edgeml_edge_oldest_unsent_age_seconds", "gauge",
        "Wall seconds since the oldest unsent row was added (0 when none).",
        [(stream(s), age or 0.0) for s, age in ages],
    )  # fmt: skip
    drops = outbox.drops()
    metric(
        "edgeml_edge_dropped_total", "counter", "Records dropped, by stream and reason.",
        [
            (f'{{stream="{s}",reason="{r}"}}', drops.get((s, r), 0))
            for s in STREAMS
            for r in DROP_REASONS
        ],
    )  # fmt: skip
    metric(
        "edgeml_edge_sent_total", "counter", "Records acknowledged by Kafka.",
        [(stream(s), outbox.count(f"sent:{s}")) for s in STREAMS],
    )  # fmt: skip
    metric("edgeml_edge_sync_rows_per_second", "gauge", "Rows/s of the last forward round.",
           [("", metrics.sync_rate_rows_per_s)])  # fmt: skip
    metric("edgeml_edge_sync_errors_total", "counter", "Forward rounds that failed.",
           [("", metrics.sync_errors)])  # fmt: skip
    metric("edgeml_edge_broker_connected", "gauge", "1 while the producer is connected.",
           [("", 1 if metrics.broker_connected else 0)])  # fmt: skip
    metric("edgeml_edge_webhook_failures_total", "counter", "Alert webhook posts that failed.",
           [("", metrics.webhook_failures)])  # fmt: skip
    metric(
        "edgeml_edge_model_refused_total", "counter",
        "Model versions refused (at start or as updates): " + ", ".join(REFUSE_REASONS) + ".",
        [(f'{{reason="{r}"}}', metrics.models_refused.get(r, 0)) for r in REFUSE_REASONS],
    )  # fmt: skip
    metric("edgeml_edge_model_swaps_total", "counter", "Model updates swapped in.",
           [("", metrics.model_swaps)])  # fmt: skip
    metric("edgeml_edge_model_kept_total", "counter", "Swapped-in models that passed their "
           "health window.", [("", metrics.model_kept)])  # fmt: skip
    metric("edgeml_edge_model_rollbacks_total", "counter", "Swapped-in models rolled back "
           "after failing their health window.", [("", metrics.model_rollbacks)])  # fmt: skip
    metric("edgeml_edge_uptime_seconds", "gauge", "Seconds since this process started.",
           [("", clock() - metrics.started_at)])  # fmt: skip
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
