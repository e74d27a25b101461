"""`create_app(settings)`: a fresh Faust app with the platform's topics, tables and agents."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from agents import hello, maintenance, model_updates, score
from agents.publish import Publisher
from agents.score import BatchProgress
from agents.state import device_states
from agents.writeback import CommitFlusher
from app import observability
from app.lifecycle import AgentCrashSupervisor, Worker, life_of
from app.metrics import Metrics, TimedScorer
from app.settings import Settings
from models.pipeline import ReadingPipeline
from models.registry import ModelRegistry
from models.validation import ValidationLimits
from topics.declare import declare_tables, declare_topics

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """Faust's credentials for the protocol: SASL over TLS for `SASL_SSL` (faust derives the
    protocol from `ssl_context` being set), SASL alone for `SASL_PLAINTEXT`, TLS alone for `SSL`.
    The SSL context is the one every other client gets (`app.security.ssl_context`)."""
    context = settings.ssl_context()
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username or "",
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings) -> faust.App:
    """Build the worker app. Tests build a fresh one per test with `memory://` stores."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=_broker_credentials(settings),
        store=settings.store,
        # One directory per app id: RocksDB files are named by table, not by app.
        datadir=str(settings.data_dir / settings.app_id),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.web_url(),
        web_stats_enabled=settings.web_stats,
        web_tables_enabled=settings.web_tables,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        autodiscover=False,
        # Worker lifecycle (`app.lifecycle`): a crashed agent stops the worker (exit 1), a stop
        # is bounded, and a restarted worker rejoins as the same static member. Kill -9, then
        # restart, to the first new prediction (tests/integration/test_worker_lifecycle.py):
        # 5.7-12.3 s static (the rejoin itself ~1.5 s; the rest is process start), 13.1 s
        # dynamic with a 15 s session timeout, 54-55 s with Faust's 60 s default (issue #9).
        agent_supervisor=AgentCrashSupervisor,
        Worker=Worker,
        consumer_group_instance_id=settings.group_instance_id(),
        broker_session_timeout=settings.session_timeout_s,
    )
    life_of(app).configure(
        stop_timeout_s=settings.stop_timeout_s,
        outage_log_interval_s=settings.outage_log_interval_s,
    )
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    limits = ValidationLimits(
        max_message_bytes=settings.max_message_bytes,
        max_future_s=settings.max_future_s,
        max_abs_value=settings.max_abs_value,
    )
    registry = ModelRegistry(settings.registry_root, threads=settings.onnx_threads)
    metrics = Metrics(settings.app_id)
    scorer = TimedScorer(metrics.observe_model, registry_root=settings.registry_root)
    pipeline = ReadingPipeline(scorer, limits)
    publisher = Publisher(app, topics)
    states = device_states(tables.state_by_device)
    progress = BatchProgress()
    observers = observability.register(app, settings, topics, scorer, metrics, progress)
    score.register(app, settings, topics, pipeline, publisher, states, progress, observers)
    maintenance.register(app, topics, pipeline, publisher, states)
    flusher = CommitFlusher([states, *observability.of(app).stores.all()])
    app.sensors.add(flusher)

    @app.on_partitions_revoked.connect
    async def flush_before_handover(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust committed (and so flushed) while revoking; anything written since goes out
        # before the partitions' new owners recover them.
        flusher.flush()

    model_updates.register(app, settings, pipeline, registry)
    hello.register(app, settings)

    @app.task
    async def at_start() -> None:
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)
        # Input topics are declared by Faust when subscribed; outputs are only written to.
        for topic in topics.outputs():
            await topic.maybe_declare()

    return app
