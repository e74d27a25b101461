"""Worker status views: `GET /health`, `GET /models`, `GET /metrics` (Prometheus).

`/health` is public (no token) and cheap. Two probes:

- `?probe=live` (an orchestrator's liveness probe: 503 means "restart me") answers 503 when an
  agent crashed (the worker is exiting, `app.lifecycle`) or when one batch has been in progress
  for `EDGEML_STALL_AFTER_S` while the broker answers (a stuck worker, seen once as a producer
  send that never completed); else 200. A batch waiting on an unreachable broker is *not*
  stuck: restarting the worker would not bring the broker back (issue #9: after 120 s of
  outage the old probe would have restarted every healthy worker). It answers at all only
  while the event loop runs, so a blocked loop fails it too (by timeout).
- plain `/health` (readiness: 503 means "send no traffic, page nobody yet") answers 200 only
  when live, ready (member of the group, not rebalancing or recovering tables) and the broker
  answers (a metadata request with a 2 s timeout, cached for 5 s); the body says why not
  (`reason`), with this worker's consumer lag and the batch in progress.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from edgeml.agents.score import BatchProgress
from edgeml.app.lifecycle import life_of
from edgeml.app.metrics import CONTENT_TYPE, LagCollector, Metrics, split_ref
from edgeml.app.settings import Settings
from edgeml.models.scoring import Scorer

__all__ = ["BrokerProbe", "Liveness", "liveness", "register"]


class BrokerProbe:
    """Is the Kafka broker answering? One metadata round trip, at most every `ttl_s`."""

    def __init__(self, settings: Settings, ttl_s: float = 5.0, timeout_s: float = 2.0) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._checked = -1e9
        self._last: dict[str, Any] = {}

    async def check(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._checked < self.ttl_s:
            return self._last
        import asyncio

        from aiokafka.client import AIOKafkaClient

        config = self.settings.kafka_client_config()
        client = AIOKafkaClient(
            bootstrap_servers=config.pop("bootstrap_servers"),
            request_timeout_ms=int(self.timeout_s * 1000),
            **{k: v for k, v in config.items() if k in _CLIENT_OPTIONS},
        )
        started = time.perf_counter()
        try:
            await asyncio.wait_for(client.bootstrap(), self.timeout_s)
            brokers = len(client.cluster.brokers())
            self._last = {
                "reachable": True,
                "brokers": brokers,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        except Exception as exc:
            self._last = {"reachable": False, "error": str(exc) or type(exc).__name__}
        finally:
            await client.close()
        self._checked = time.monotonic()
        return self._last


_CLIENT_OPTIONS = ("security_protocol", "ssl_context", "sasl_mechanism",
                   "sasl_plain_username", "sasl_plain_password")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Liveness:
    """`/health?probe=live`'s verdict and why."""

    live: bool
    reason: str


def liveness(
    *, crashed: str | None, batch_s: float, stall_after_s: float, broker_reachable: bool | None
) -> Liveness:
    """Should the orchestrator restart this worker? `broker_reachable` is only needed (and only
    looked up by the view) once the batch in progress is overdue."""
    if crashed:
        return Liveness(False, crashed)
    if batch_s < stall_after_s:
        return Liveness(True, "processing" if batch_s else "idle")
    if broker_reachable is False:
        return Liveness(True, f"waiting for the broker: batch in progress for {batch_s:.0f} s")
    return Liveness(False, f"stuck: batch in progress for {batch_s:.0f} s, the broker answers")


def _ready(app: faust.App) -> tuple[bool, str]:
    if not app.router.tables_metadata():
        return False, "no partition assignment yet"
    if app.rebalancing:
        return False, "rebalancing"
    recovery = getattr(app.tables, "recovery", None)
    if recovery is not None and recovery.in_recovery:
        return False, "recovering tables from their changelogs"
    return True, "processing"


def model_report(scorer: Scorer, metrics: Metrics) -> list[dict[str, Any]]:
    """What this worker scores with: each role's model, version, manifest and latency."""
    out: list[dict[str, Any]] = []
    for role, ref in scorer.model_ids.items():
        model_id, version = split_ref(ref)
        entry: dict[str, Any] = {"role": role, "ref": ref, "model_id": model_id,
                                 "version": version}  # fmt: skip
        if role == "failure" and scorer.failure_model is not None:
            current = getattr(scorer.failure_model, "current", None)
            manifest = getattr(current, "manifest", None)
            if manifest is not None:
                entry["kind"] = manifest.kind
                entry["created_at"] = manifest.created_at
                entry["sha256"] = manifest.sha256
                entry["size_bytes"] = manifest.size_bytes
                entry["inputs"] = list(manifest.inputs)
                if manifest.latency is not None:
                    entry["registered_latency"] = dataclasses.asdict(manifest.latency)
        if role == "failure_online":
            entry["note"] = "online classifier; its version counts the failures it learned"
        else:
            entry["serving_latency"] = metrics.model_latency.summary(ref)
        out.append(entry)
    return out


def register(
    app: faust.App,
    settings: Settings,
    scorer: Scorer,
    metrics: Metrics,
    lag: LagCollector,
    progress: BatchProgress,
) -> None:
    probe = BrokerProbe(settings)
    worker = settings.web_url()
    life = life_of(app)

    @app.page("/health", name="health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            batch_s = round(progress.in_progress_s(), 3)
            crashed = life.crashed
            broker: dict[str, Any] | None = None
            if batch_s >= settings.stall_after_s or request.query.get("probe") != "live":
                broker = await probe.check()
            reachable = None if broker is None else bool(broker.get("reachable"))
            verdict = liveness(
                crashed=crashed,
                batch_s=batch_s,
                stall_after_s=settings.stall_after_s,
                broker_reachable=reachable,
            )
            if request.query.get("probe") == "live":
                probe_body: dict[str, Any] = {"live": verdict.live}
                if not verdict.live or batch_s >= settings.stall_after_s:
                    probe_body["reason"] = verdict.reason
                    probe_body["batch_in_progress_s"] = batch_s
                return self.json(probe_body, status=200 if verdict.live else 503)
            assert broker is not None
            ready, state = _ready(app)
            lags = lag.lags()
            ok = verdict.live and ready and bool(reachable)
            reason = (
                verdict.reason if not verdict.live
                else state if not ready
                else "broker unreachable" if not reachable
                else verdict.reason
            )  # fmt: skip
            body = {
                "status": "ok" if ok else "unavailable",
                "reason": reason,
                "live": verdict.live,
                "batch_in_progress_s": batch_s,
                "ready": ready,
                "state": state,
                "worker": worker,
                "app_id": settings.app_id,
                "broker": broker,
                "lag": {
                    "total": sum(lags.values()),
                    "partitions": {f"{t}/{p}": n for (t, p), n in sorted(lags.items())},
                },
            }
            if crashed:
                body["crashed"] = crashed
            return self.json(body, status=200 if ok else 503)

    @app.page("/models", name="models")
    class Models(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": worker, "models": model_report(scorer, metrics)})

    @app.page("/metrics", name="metrics")
    class PrometheusMetrics(View):
        async def get(self, request: Request) -> Any:
            # aiohttp refuses a charset inside `content_type`, so set the header itself
            return aioweb.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
