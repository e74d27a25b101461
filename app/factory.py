"""The worker's one composition root: `build_worker(settings)` builds a fresh Faust app and
every part wired into it (topics, tables, model registry, scorer, pipeline, publisher, metrics,
observers, analytics, sensors, web views, and with `failure_challenger` the challenger's shadow
scorer) and returns them together as a `Worker`.

`create_app(settings)` is `build_worker(settings).app`, for `faust -A edgeml.app.main worker` and
the
CLI; tests build a fresh `Worker` per test with `memory://` stores and reach its parts as
attributes. Nothing here reads the disk in a constructor: the failure model the scorer serves
at start-up is loaded here, from the one `ModelRegistry` (with `onnx_threads`) that hot swaps
also load from.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust

from edgeml.agents import analytics, delivery, maintenance, model_updates, score
from edgeml.agents.analytics import AnalyticsObserver, AnalyticsStores, resend_after_recovery
from edgeml.agents.publish import Publisher
from edgeml.agents.recovery import hold_delivery_until_seeked
from edgeml.agents.score import BatchObserver, BatchProgress
from edgeml.agents.state import device_states
from edgeml.agents.writeback import CommitFlusher, KillAfterFlush, WriteBackTable, WriteStage
from edgeml.app import lifecycle, observability
from edgeml.app.errors import ConfigError
from edgeml.app.lifecycle import AgentCrashSupervisor, life_of
from edgeml.app.metrics import LagCollector, Metrics, guarded
from edgeml.app.settings import Settings
from edgeml.app.web.alerts import AlertFeed
from edgeml.models.analytics import AnalyticsWindows
from edgeml.models.manifest import ModelManifest, RegistryError
from edgeml.models.pipeline import ReadingPipeline
from edgeml.models.registry import FAILURE_MODEL_ID, ModelHandle, ModelRegistry
from edgeml.models.scoring import DeviceState, FailureModel, Scorer
from edgeml.models.shipped import seed_registry
from edgeml.models.validation import ValidationLimits
from edgeml.topics.analytics import AnalyticsTables, declare_analytics
from edgeml.topics.catalog import MODEL_COMPARISONS, MODEL_REGISTRY
from edgeml.topics.declare import Tables, Topics, declare_tables, declare_topic, declare_topics

if TYPE_CHECKING:
    from edgeml.models.inference.shadow import ShadowScorer

__all__ = ["Worker", "build_worker", "create_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worker:
    """One worker's parts, as `build_worker` wired them into `app` (the Faust app that runs
    them; `app.lifecycle.Worker` is the Faust worker process class that runs an app)."""

    app: faust.App
    topics: Topics
    tables: Tables
    analytics_tables: AnalyticsTables
    registry: ModelRegistry
    scorer: Scorer
    pipeline: ReadingPipeline
    publisher: Publisher
    states: WriteBackTable[DeviceState]
    progress: BatchProgress
    metrics: Metrics
    windows: AnalyticsWindows
    stores: AnalyticsStores
    analytics: AnalyticsObserver
    # score_readings' observers in call order; the last holds the batch's writes (see below).
    observers: tuple[BatchObserver, ...]
    flusher: CommitFlusher
    lag: LagCollector
    feed: AlertFeed
    shadow: ShadowScorer | None = None  # the challenger's, with `Settings.failure_challenger`


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


def _faust_app(settings: Settings) -> faust.App:
    """The bare Faust app: broker, store, web server, producer and lifecycle settings."""
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
        Worker=lifecycle.Worker,
        consumer_group_instance_id=settings.group_instance_id(),
        broker_session_timeout=settings.session_timeout_s,
    )
    life_of(app).configure(
        stop_timeout_s=settings.stop_timeout_s,
        outage_log_interval_s=settings.outage_log_interval_s,
    )
    return app


def _failure_model(
    app: faust.App, settings: Settings, registry: ModelRegistry, metrics: Metrics
) -> FailureModel | None:
    """The promoted failure model the Scorer serves: the registry's handle (one in-process
    session), or, when configured (`Settings.failure_engine_enabled`), the inference engine's
    pool behind the same interface, with its metrics on the worker's `/metrics` and closed
    when the app shuts down. None without a promoted failure model."""
    if not settings.failure_engine_enabled():
        return registry.promoted_handle(FAILURE_MODEL_ID)
    if registry.promoted_version(FAILURE_MODEL_ID) is None:
        log.warning("no promoted %s in %s: failure risk from the online model only",
                    FAILURE_MODEL_ID, registry.root)  # fmt: skip
        return None
    from edgeml.models.inference import EngineFailureModel

    spec, config = settings.failure_pool()
    model = EngineFailureModel.from_registry(registry, FAILURE_MODEL_ID, config=config, spec=spec)
    metrics.observe_engine(model.engine)
    log.info("failure task on the inference engine: %s", ", ".join(
        m.backend.name for m in model.engine.tasks[model.task].members))  # fmt: skip

    @app.on_before_shutdown.connect
    async def close_engine(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(model.close)  # joins the engine's loop thread: off the loop

    return model


def _challenger(settings: Settings, registry: ModelRegistry) -> ModelHandle | None:
    """`Settings.failure_challenger`, loaded (None when unset) with the promoted failure
    model's inputs, before anything else is started: a ref the registry cannot serve stops
    start-up with one line (`ConfigError`), not with a worker that silently compares nothing."""
    ref = settings.failure_challenger
    if ref is None:
        return None
    model_id, _, version = ref.rpartition("@")
    try:
        champion = registry.manifest(FAILURE_MODEL_ID)  # the promoted version's
        return registry.handle(model_id, version, expected_inputs=champion.inputs)
    except RegistryError as exc:
        raise ConfigError(f"failure_challenger {ref}: {exc}") from None


class _RawChampion:
    """The champion the shadow thread re-scores with when the failure task runs on the
    inference engine: the served version in one in-process session, not the engine pool
    (whose capacity, breakers and metrics are the live path's), following hot swaps."""

    def __init__(self, served: Any, registry: ModelRegistry) -> None:
        self._served = served  # an EngineFailureModel: `manifest` is the version it serves
        self._registry = registry
        self._handle = registry.handle(FAILURE_MODEL_ID, served.manifest.version)

    def _current(self) -> ModelHandle:
        manifest: ModelManifest = self._served.manifest
        if manifest.ref != self._handle.ref:  # hot-swapped since: load it here, off the path
            self._handle.swap(self._registry.load(manifest.model_id, manifest.version))
        return self._handle

    @property
    def ref(self) -> str:
        return self._current().ref

    def predict(self, features: Any) -> Any:
        return self._current().predict(features)


def _shadow(
    app: faust.App,
    settings: Settings,
    challenger: ModelHandle,
    served: FailureModel | None,
    registry: ModelRegistry,
    metrics: Metrics,
) -> tuple[ShadowScorer, BatchObserver]:
    """The challenger's `ShadowScorer` (docs/inference.md "Shadow scoring") and the guarded
    `score_readings` observer feeding it: its counters on `/metrics`, its comparisons published
    to `model-comparisons`, its thread closed at shutdown. The champion it re-scores with is
    the served handle itself (a hot swap shows). Imported here: `models.inference` costs a
    worker without a challenger ~90 ms of start-up for nothing."""
    from edgeml.agents import shadow
    from edgeml.models.inference.shadow import ShadowScorer

    if served is None:  # `_challenger` found a promoted version; the engine found none
        raise ConfigError(f"failure_challenger {challenger.ref}: no champion to compare with")
    champion = served if isinstance(served, ModelHandle) else _RawChampion(served, registry)
    scorer = ShadowScorer(challenger, champion=champion)
    metrics.observe_shadow(scorer)
    shadow.register(app, scorer, declare_topic(app, settings.topic_layout(), MODEL_COMPARISONS))
    log.info("shadow scoring: %s beside %s -> %s", challenger.ref, champion.ref,
             settings.topic(MODEL_COMPARISONS.name))  # fmt: skip

    @app.on_before_shutdown.connect
    async def close_shadow(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        scorer.close()  # never blocks: a hung challenger keeps only its daemon thread

    return scorer, guarded(shadow.observer(scorer), "shadow", metrics)


def build_worker(settings: Settings) -> Worker:
    """Build a fresh worker: one app and every part of it, wired (see the module docstring)."""
    app = _faust_app(settings)
    hold_delivery_until_seeked(app)  # no input lost to the post-recovery seek (issue #9)
    delivery.install(app)  # no offset commit ahead of the writes its flush buffered (issue #9)
    layout = settings.topic_layout()
    topics = declare_topics(app, layout)
    tables = declare_tables(app, layout)
    limits = ValidationLimits(
        max_message_bytes=settings.max_message_bytes,
        max_future_s=settings.max_future_s,
        max_abs_value=settings.max_abs_value,
    )
    # The one registry: the start-up model and every hot swap load with `onnx_threads`.
    if settings.seeds_registry():  # a fresh EDGEML_HOME starts with the shipped models
        seed_registry(settings.registry_root)
    registry = ModelRegistry(settings.registry_root, threads=settings.onnx_threads)
    metrics = Metrics(settings.app_id)
    challenger = _challenger(settings, registry)  # checked before the engine starts
    failure_model = _failure_model(app, settings, registry, metrics)
    shadow_scorer: ShadowScorer | None = None
    shadowing: tuple[BatchObserver, ...] = ()
    if challenger is not None:
        shadow_scorer, observe = _shadow(
            app, settings, challenger, failure_model, registry, metrics
        )
        shadowing = (observe,)
    scorer = Scorer(
        failure_model=failure_model,
        # the feature rows the challenger scores; kept only when one is configured (a list
        # per reading otherwise dropped)
        keep_failure_rows=shadow_scorer is not None,
        on_model_call=metrics.observe_model,
        kernel=settings.scoring_kernel,  # compiled: JIT warm-up here, at worker start
    )
    pipeline = ReadingPipeline(scorer, limits)
    publisher = Publisher(app, topics)
    states = device_states(tables.state_by_device)
    progress = BatchProgress()

    windows = settings.analytics_windows()
    analytics_tables = declare_analytics(app, layout)
    stores = AnalyticsStores.over(analytics_tables)
    observer = AnalyticsObserver(
        analytics_tables, stores, windows, sweep_every_s=settings.analytics_sweep_s
    )
    analytics.register(app, analytics_tables, stores.sites, windows)
    inputs = (topics.readings, topics.maintenance, analytics_tables.site_partials_topic)
    watch = observability.register(
        app, settings, inputs=[topic.get_topic_name() for topic in inputs],
        tables=analytics_tables, stores=stores, windows=windows, scorer=scorer,
        metrics=metrics, progress=progress,
    )  # fmt: skip
    stage = WriteStage.of(app)
    if settings.fault_kill_after_flush:
        app.sensors.add(KillAfterFlush(stage, settings.fault_kill_after_flush))
    resend_after_recovery(app, stores.partials)  # a kill during a flush's sends (docs/faults.md)
    # The analytics and shadow observers are guarded: a failure there is counted and logged,
    # never stops scoring. `hold_batch` must stay last: it holds every write the batch made
    # (state, analytics, site partials) until `score_readings` releases it once its outputs
    # are acked. The shadow observer only copies rows into a bounded queue (never blocks).
    observers = (guarded(observer, "analytics", metrics), metrics.observe_batch, *shadowing,
                 stage.hold_batch)  # fmt: skip
    score.register(
        app, topics.readings, pipeline, publisher, states, progress, observers,
        batch_max=settings.batch_max, batch_within_s=settings.batch_within_s,
    )  # fmt: skip
    maintenance.register(app, topics.maintenance, pipeline, publisher, states)
    flusher = CommitFlusher([states, *stores.all()])
    app.sensors.add(flusher)
    if settings.fault_kill_before_sends:
        kill = KillAfterFlush(stage, settings.fault_kill_before_sends, flusher=flusher)
        app.sensors.add(kill)

    @app.on_partitions_revoked.connect
    async def flush_before_handover(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust committed (and so flushed) while revoking; anything written since goes out
        # before the partitions' new owners recover them.
        flusher.flush()

    model_updates.register(
        app, pipeline, registry,
        topic=layout.topic_name(MODEL_REGISTRY),
        partitions=layout.partitions_of(MODEL_REGISTRY),
        consumer_config=settings.consumer_config(None),
    )  # fmt: skip

    @app.task
    async def at_start() -> None:
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)
        # Input topics are declared by Faust when subscribed; outputs are only written to.
        for topic in topics.outputs():
            await topic.maybe_declare()

    return Worker(
        app=app, topics=topics, tables=tables, analytics_tables=analytics_tables,
        registry=registry, scorer=scorer, pipeline=pipeline, publisher=publisher,
        states=states, progress=progress, metrics=metrics, windows=windows, stores=stores,
        analytics=observer, observers=observers, flusher=flusher, lag=watch.lag,
        feed=watch.feed, shadow=shadow_scorer,
    )  # fmt: skip


def create_app(settings: Settings) -> faust.App:
    """The worker's Faust app (`build_worker(settings).app`): `faust -A edgeml.app.main` runs it."""
    return build_worker(settings).app
