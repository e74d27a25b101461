"""The worker's web server (Faust's, aiohttp): analytics JSON views, health, models,
Prometheus metrics, the live alert stream and the dashboard page. `register_web` adds them
all to an app; `create_app` calls it."""

from __future__ import annotations

import faust

from edgeml.agents.analytics import AnalyticsStores
from edgeml.agents.score import BatchProgress
from edgeml.app.metrics import LagCollector, Metrics
from edgeml.app.settings import Settings
from edgeml.app.web import alerts, analytics, dashboard, status
from edgeml.app.web.alerts import AlertFeed
from edgeml.app.web.auth import bearer_middleware
from edgeml.models.analytics import AnalyticsWindows
from edgeml.models.scoring import Scorer
from edgeml.topics.analytics import AnalyticsTables

__all__ = ["register_web"]


def register_web(
    app: faust.App,
    settings: Settings,
    *,
    tables: AnalyticsTables,
    stores: AnalyticsStores,
    windows: AnalyticsWindows,
    scorer: Scorer,
    metrics: Metrics,
    lag: LagCollector,
    feed: AlertFeed,
    progress: BatchProgress,
) -> None:
    if settings.web_token is not None:
        middleware = bearer_middleware(settings.web_token.get_secret_value())
        app.web.web_app.middlewares.append(middleware)  # type: ignore[attr-defined]
    analytics.register(app, settings, tables, stores, windows)
    status.register(app, settings, scorer, metrics, lag, progress)
    alerts.register(app, feed)
    dashboard.register(app)
