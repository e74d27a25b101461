"""`EdgeAgent`: the edge agent's composition root and its main loop.

Four concurrent parts on one event loop (one scoring thread, as the issue asks of a small box):

1. scoring: source batches -> `BatchRunner` (score + one commit) -> local alerts;
2. sync: `Forwarder` sends the outbox whenever the broker answers (woken after each commit);
3. the local web server (`/health`, `/metrics`);
4. model updates (with a public key, while online): `follow_models` reads the platform's
   announcements and signed bundles, `ModelUpdater` stages, swaps between batches, watches the
   health window after every committed batch and rolls back (`edge.updates`).

`until` says when `run` returns: `forever` (default: keep forwarding after a finite source
ends; a daemon), `scored` (once the source is exhausted and committed), `synced` (once, in
addition, the outbox is empty). SIGTERM/SIGINT stop it cleanly between batches; kill -9 loses
nothing that was committed (`edge.runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from edgeml.edge.alerts import LocalAlerts
from edgeml.edge.backoff import Backoff, RateLimiter
from edgeml.edge.db import connect, get_meta
from edgeml.edge.errors import EdgeConfigError, EdgeError
from edgeml.edge.follow import follow_models
from edgeml.edge.metrics import EdgeMetrics, render
from edgeml.edge.outbox import Outbox
from edgeml.edge.records import RecordOptions, edge_fields, model_version
from edgeml.edge.runner import BatchRunner, position_key
from edgeml.edge.settings import EdgeSettings
from edgeml.edge.signing import UntrustedModel, verify_version
from edgeml.edge.sources import MessageBatch, ThreadedSource
from edgeml.edge.state import SqliteStateStore
from edgeml.edge.sync import Forwarder, Producer
from edgeml.edge.updates import ModelSlot, ModelUpdater
from edgeml.edge.web import start_web
from edgeml.models.pipeline import ReadingPipeline
from edgeml.models.registry import ModelHandle
from edgeml.models.scoring import FailureModel, Scorer
from edgeml.models.validation import ValidationLimits
from edgeml.topics.catalog import ALERTS, MODEL_REGISTRY, PREDICTIONS, READINGS

__all__ = ["EdgeAgent", "Until", "load_failure_model"]

Until = Literal["forever", "scored", "synced"]
log = logging.getLogger("edgeml.edge")
_SYNC_STOP_S = 10.0  # how long a stop waits for the forward round in progress
_LOGGED_REJECTIONS = 5  # per batch: bad input is logged, not allowed to flood the log


def load_failure_model(
    settings: EdgeSettings, metrics: EdgeMetrics | None = None
) -> FailureModel | None:
    """The failure model to start with, or None (online model only): the version promoted in
    the device's own registry (`model_store`: the last update that passed its health window),
    else the promoted one of the registry root (the shipped models by default).

    With `model_public_key` set, the version must carry a valid Ed25519 signature
    (`edge.signing`); a version that is unsigned, badly signed, or whose bytes do not match its
    manifest (the registry's sha256 check) is refused with one ERROR line and counted in
    `metrics.models_refused` by reason, and the next root is tried: the agent scores with the
    online model rather than stop (a device keeps detecting anomalies whatever came down the
    wire)."""
    from edgeml.models.shipped import SHIPPED_ROOT

    public_key = None
    if settings.model_public_key is not None:
        try:
            public_key = settings.model_public_key.read_bytes()
        except OSError as exc:
            raise EdgeConfigError(f"cannot read the model public key: {exc}") from None
    roots = [settings.model_store_path(), settings.registry_root or SHIPPED_ROOT]
    for root in roots:
        model = _load_promoted(root, settings, public_key, metrics)
        if model is not None:
            return model
    if not roots[-1].is_dir():
        log.warning("no model registry at %s: failure risk from the online model only", roots[-1])
    return None


def _load_promoted(
    root: Path, settings: EdgeSettings, public_key: bytes | None, metrics: EdgeMetrics | None
) -> ModelHandle | None:
    from edgeml.models.manifest import RegistryError, TamperedArtifact
    from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry

    if not (root / FAILURE_MODEL_ID).is_dir():
        return None
    registry = ModelRegistry(root, threads=settings.onnx_threads)
    version = registry.promoted_version(FAILURE_MODEL_ID)
    if version is None:
        return None
    try:
        if public_key is not None:
            verify_version(registry.version_dir(FAILURE_MODEL_ID, version), public_key)
        return registry.promoted_handle(FAILURE_MODEL_ID)
    except UntrustedModel as exc:
        reason, error = exc.reason, str(exc)
    except TamperedArtifact as exc:
        reason, error = "tampered", str(exc)
    except RegistryError as exc:
        reason, error = "invalid", str(exc)
    log.error(
        "refusing model %s@%s of %s (%s): not served",
        FAILURE_MODEL_ID, version, root, error,
    )  # fmt: skip
    if metrics is not None:
        metrics.models_refused[reason] = metrics.models_refused.get(reason, 0) + 1
    return None


class EdgeAgent:
    """Builds every part from `settings` (module docstring); `make_producer` replaces the
    aiokafka producer in tests."""

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        make_producer: Callable[[], Producer] | None = None,
        failure_model: FailureModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        try:
            self.conn = connect(settings.db_path)
        except (sqlite3.Error, OSError) as exc:
            raise EdgeError(f"cannot open the edge database {settings.db_path}: {exc}") from None
        self.outbox = Outbox(self.conn, settings.outbox_limits(), clock)
        self.states = SqliteStateStore(self.conn, settings.state_cache_devices)
        self.metrics = EdgeMetrics()
        model = (
            failure_model
            if failure_model is not None
            else load_failure_model(settings, self.metrics)
        )
        # a registry model is served through a slot, so that updates can swap it between
        # batches; without one (none trusted) the slot starts empty and the scorer gets it with
        # the first update that passes its checks
        self.slot: ModelSlot | None = None
        if isinstance(model, ModelHandle):
            self.slot = ModelSlot(model.current, settings.model_health_batches)
        elif model is None:
            self.slot = ModelSlot(None, settings.model_health_batches)
        self.scorer = Scorer(
            failure_model=self.slot if self.slot is not None and not self.slot.empty else model,
            kernel=settings.scoring_kernel,
        )
        self.updater = self._updater()
        limits = ValidationLimits(
            max_message_bytes=settings.max_message_bytes, max_future_s=settings.max_future_s
        )
        self.pipeline = ReadingPipeline(self.scorer, limits, clock=clock)
        self.options = RecordOptions(settings.agent_id, settings.raw_readings, settings.raw_every)
        self.runner = BatchRunner(
            self.pipeline, self.states, self.outbox, self.options,
            clock=clock, kill_in_batch=settings.fault_kill_in_batch,
        )  # fmt: skip
        self.alerts = LocalAlerts(
            self.metrics,
            webhook_url=settings.webhook_url,
            webhook_timeout_s=settings.webhook_timeout_s,
        )
        layout = settings.topic_layout()
        self.forwarder = Forwarder(
            self.outbox,
            make_producer or self._aiokafka_producer,
            {
                "readings": layout.topic_name(READINGS),
                "predictions": layout.topic_name(PREDICTIONS),
                "alerts": layout.topic_name(ALERTS),
            },
            agent_id=settings.agent_id,
            metrics=self.metrics,
            backoff=Backoff(settings.backoff_initial_s, settings.backoff_max_s),
            limiter=RateLimiter(settings.sync_max_bytes_per_s),
            chunk_rows=settings.sync_chunk_rows,
        )
        self.source_ended = False

    def _updater(self) -> ModelUpdater | None:
        s = self.settings
        if self.slot is None or not s.model_updates or s.model_public_key is None:
            return None  # updates are signed models only: no key, no updates
        return ModelUpdater(
            self.slot, s.model_store_path(), s.model_public_key.read_bytes(), self.conn,
            self.metrics, inputs=tuple(self.scorer.failure_inputs.names), attach=self._attach,
            window_batches=s.model_health_batches, max_drift=s.model_max_drift,
            max_bad_fraction=s.model_max_bad_fraction, threads=s.onnx_threads,
        )  # fmt: skip

    def _attach(self, slot: ModelSlot | None) -> None:
        self.scorer.failure_model = slot

    def _follow_models(self, stop: asyncio.Event) -> Any:
        assert self.updater is not None
        s = self.settings
        layout = s.topic_layout()
        config = {
            "bootstrap_servers": s.bootstrap_servers,
            "client_id": f"edgeml-edge-{s.agent_id}-models",
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_partition_fetch_bytes": s.model_max_bundle_bytes,
            "fetch_max_bytes": 2 * s.model_max_bundle_bytes,
            "request_timeout_ms": s.request_timeout_ms,
        }
        return follow_models(
            self.updater, config, layout.topic_name(MODEL_REGISTRY),
            f"{s.topic_prefix}{s.model_artifacts_topic}", stop,
            Backoff(s.backoff_initial_s, s.backoff_max_s),
        )  # fmt: skip

    @property
    def model_version(self) -> str:
        return model_version(self.scorer.model_ids)

    def _aiokafka_producer(self) -> Producer:
        from aiokafka import AIOKafkaProducer

        producer: Producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id=f"edgeml-edge-{self.settings.agent_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=self.settings.request_timeout_ms,
        )
        return producer

    # --- running ------------------------------------------------------------------------------
    async def run(
        self, source: ThreadedSource, until: Until = "forever", stop: asyncio.Event | None = None
    ) -> int:
        if until == "synced" and not self.settings.sync_enabled:
            raise EdgeConfigError("--until synced needs sync enabled (EDGEML_EDGE_SYNC_ENABLED)")
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)
        stop_sync = asyncio.Event()
        web = None
        if self.settings.web_port:
            host, port = self.settings.web_host, self.settings.web_port
            try:
                web = await start_web(host, port, self.health, self.metrics_text)
            except OSError as exc:
                self.conn.close()
                raise EdgeError(
                    f"cannot serve /health and /metrics on {host}:{port}: {exc}"
                ) from None
        sync = (
            loop.create_task(self.forwarder.run(stop_sync), name="edge-sync")
            if self.settings.sync_enabled
            else None
        )
        follow = (
            loop.create_task(self._follow_models(stop_sync), name="edge-models")
            if self.settings.sync_enabled and self.updater is not None
            else None
        )
        log.info(
            "edge agent %s scoring with %s; outbox %s (%d rows waiting); broker %s",
            self.settings.agent_id, self.model_version, self.settings.db_path,
            self.outbox.total_rows, self.settings.bootstrap_servers,
        )  # fmt: skip
        try:
            await self._score(source, stop)
            if until == "synced":
                while not stop.is_set() and self.outbox.total_rows:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)
            elif until == "forever":
                await stop.wait()
        finally:
            stop_sync.set()
            tasks = [task for task in (sync, follow) if task is not None]
            if tasks:  # a round stuck on a dead broker is cut (its rows stay unsent)
                _, pending = await asyncio.wait(tasks, timeout=_SYNC_STOP_S)
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if web is not None:
                await web.cleanup()
            await self.alerts.close()
            self.conn.close()
        log.info("edge agent stopped; %d rows wait in the outbox", self.outbox.total_rows)
        return 0

    async def _score(self, source: ThreadedSource, stop: asyncio.Event) -> None:
        start = 0
        if source.name is not None:
            start = int(get_meta(self.conn, position_key(source.name)) or 0)
            if start:
                log.info("resuming source %s after message %d", source.name, start)
        async for batch in source.batches(
            start, self.settings.batch_max, self.settings.batch_within_s, stop
        ):
            if stop.is_set() or not await self._commit(source, batch, stop):
                return
            await asyncio.sleep(0)  # let the forwarder and the web server run
        if stop.is_set():
            return
        self.source_ended = True
        log.info("source ended; %d readings scored by this process", self.metrics.readings_scored)

    async def _commit(
        self, source: ThreadedSource, batch: MessageBatch, stop: asyncio.Event
    ) -> bool:
        """Score and commit one batch, retrying a failed commit; False when stopped first."""
        position = (source.name, batch.position) if source.name is not None else None
        attempt = 0
        while True:
            try:
                outcome = self.runner.run(batch.messages, position)
                break
            except sqlite3.Error as exc:  # disk full, I/O error: rolled back, try again
                self.metrics.commit_errors += 1
                delay = self.forwarder.backoff.delay(attempt)
                attempt += 1
                log.warning("batch commit failed (%s); retrying in %.1f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return False
        if self.updater is not None:
            self.updater.after_batch()  # the health window of a swapped-in model
        result = outcome.result
        self.metrics.batches += 1
        self.metrics.readings_scored += result.readings
        self.metrics.dead_letters += result.dead_letters
        self.metrics.redelivered += result.redelivered
        self.metrics.last_batch_at = time.time()
        for rejected in result.rejections[:_LOGGED_REJECTIONS]:
            log.warning("invalid input (%s): %s", rejected.error_class, rejected.reason)
        if result.alert_events:
            extra = edge_fields(self.options, self.model_version)
            for alert in result.alert_events:
                self.alerts.announce(alert, extra)
        self.forwarder.wakeup.set()
        return True

    # --- observing ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "agent_id": self.settings.agent_id,
            "model_version": self.model_version,
            "broker_connected": self.metrics.broker_connected,
            "backlog_rows": self.outbox.total_rows,
            "backlog_bytes": self.outbox.total_bytes,
            "readings_scored": self.metrics.readings_scored,
            "last_batch_at": self.metrics.last_batch_at,
            "source_ended": self.source_ended,
        }

    def metrics_text(self) -> str:
        return render(self.metrics, self.outbox, self.settings.agent_id, self.model_version)
