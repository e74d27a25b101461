"""Wires analytics, metrics and the web server into an app (called by `create_app`).

Returns the `BatchObserver`s for `score_readings`: the analytics tables' observer (guarded, so
a failure there is counted and logged but never stops scoring), the metrics observer, and last
the app's `WriteStage.hold_batch`, which holds every write the batch made (state, analytics,
site partials) until `score_readings` releases it after its outputs are acked
(`agents.writeback`). With `fault_kill_after_flush` set it also adds the kill-window fault hook.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faust

from agents import analytics
from agents.analytics import AnalyticsObserver, AnalyticsStores
from agents.score import BatchProgress
from agents.writeback import KillAfterFlush, WriteStage
from app.metrics import LagCollector, Metrics, guarded
from app.settings import Settings
from app.web import register_web
from app.web.alerts import AlertFeed
from models.analytics import AnalyticsWindows
from models.pipeline import BatchResult
from models.scoring import Scorer
from topics.analytics import AnalyticsTables, declare_analytics
from topics.declare import Topics

__all__ = ["Observability", "of", "register"]

Observer = Callable[[BatchResult, Sequence[faust.EventT]], None]


@dataclass(frozen=True)
class Observability:
    """The pieces `register` added to one app (tests and tools reach them with `of(app)`)."""

    tables: AnalyticsTables
    stores: AnalyticsStores
    windows: AnalyticsWindows
    analytics: AnalyticsObserver
    metrics: Metrics
    lag: LagCollector
    feed: AlertFeed
    progress: BatchProgress


_REGISTERED: weakref.WeakKeyDictionary[faust.App, Observability] = weakref.WeakKeyDictionary()


def of(app: faust.App) -> Observability:
    """What `register` added to `app` (KeyError for an app it was not called on)."""
    return _REGISTERED[app]


def register(
    app: faust.App,
    settings: Settings,
    topics: Topics,
    scorer: Scorer,
    metrics: Metrics,
    progress: BatchProgress,
) -> list[Observer]:
    windows = settings.analytics_windows()
    tables = declare_analytics(app, settings)
    stores = AnalyticsStores.over(tables)
    observer = AnalyticsObserver(tables, stores, windows, sweep_every_s=settings.analytics_sweep_s)
    analytics.register(app, tables, stores.sites, windows)
    inputs = {
        topics.readings.get_topic_name(),
        topics.maintenance.get_topic_name(),
        tables.site_partials_topic.get_topic_name(),
    }
    lag = metrics.add_lag(app, lambda: inputs)
    feed = AlertFeed(settings, backlog=settings.alerts_backlog, on_clients=metrics.sse_clients.set)
    register_web(
        app, settings, tables=tables, stores=stores, windows=windows, scorer=scorer,
        metrics=metrics, lag=lag, feed=feed, progress=progress,
    )  # fmt: skip
    _REGISTERED[app] = Observability(
        tables, stores, windows, observer, metrics, lag, feed, progress
    )
    stage = WriteStage.of(app)
    if settings.fault_kill_after_flush:
        app.sensors.add(KillAfterFlush(stage, settings.fault_kill_after_flush))
    # hold_batch must stay last: it holds what the observers before it wrote.
    return [guarded(observer, "analytics", metrics), metrics.observe_batch, stage.hold_batch]
