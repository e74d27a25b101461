"""Observability of one worker: the consumer-lag collector, the live alert feed and the web
views (analytics JSON, health, models, `/metrics`, the dashboard), added to an app built by
`app.factory.build_worker`.

Only what watches the worker lives here; the dataflow it watches (the analytics tables, the
`aggregate_sites` agent, the batch observers) is wired by the composition root, which passes
the parts in.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import faust

from edgeml.agents.analytics import AnalyticsStores
from edgeml.agents.score import BatchProgress
from edgeml.app.metrics import LagCollector, Metrics
from edgeml.app.settings import Settings
from edgeml.app.web import register_web
from edgeml.app.web.alerts import AlertFeed
from edgeml.models.analytics import AnalyticsWindows
from edgeml.models.scoring import Scorer
from edgeml.topics.analytics import AnalyticsTables

__all__ = ["Observability", "register"]


@dataclass(frozen=True)
class Observability:
    """What `register` added to one app: the lag collector (registered with `metrics`) and the
    alert feed the `/alerts/stream` view serves."""

    lag: LagCollector
    feed: AlertFeed


def register(
    app: faust.App,
    settings: Settings,
    *,
    inputs: Collection[str],
    tables: AnalyticsTables,
    stores: AnalyticsStores,
    windows: AnalyticsWindows,
    scorer: Scorer,
    metrics: Metrics,
    progress: BatchProgress,
) -> Observability:
    """Add lag (for the broker-side input topic names `inputs`), the alert feed and the web
    views to `app`; `metrics` is the one the worker's observers and scorer feed."""
    topics = set(inputs)
    lag = metrics.add_lag(app, lambda: topics)
    feed = AlertFeed(settings, backlog=settings.alerts_backlog, on_clients=metrics.sse_clients.set)
    register_web(
        app, settings, tables=tables, stores=stores, windows=windows, scorer=scorer,
        metrics=metrics, lag=lag, feed=feed, progress=progress,
    )  # fmt: skip
    return Observability(lag, feed)
