"""Worker status views: `GET /health`, `GET /models`, `GET /metrics` (Prometheus).

`/health` is public (no token) and cheap: liveness, readiness (member of the group, not
rebalancing or recovering tables), whether the broker answers (a metadata request with a
2 s timeout, cached for 5 s), this worker's consumer lag and how long the batch being scored
has been in progress. 200 when ready and the broker answers, else 503 with the same body.
`?probe=live` (for an orchestrator's liveness probe) answers 200 while the loop runs and no
batch has been in progress for `EDGEML_STALL_AFTER_S`, else 503: a worker stuck mid-batch
(seen once as a producer send that never completed) is restarted rather than left holding its
partitions.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from agents.score import BatchProgress
from app.metrics import CONTENT_TYPE, LagCollector, Metrics, split_ref
from app.settings import Settings
from models.scoring import Scorer

__all__ = ["BrokerProbe", "register"]


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


_CLIENT_OPTIONS = ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                   "sasl_plain_password")  # fmt: skip


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

    @app.page("/health", name="health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            batch_s = round(progress.in_progress_s(), 3)
            live = batch_s < settings.stall_after_s
            if request.query.get("probe") == "live":
                probe_body: dict[str, Any] = {"live": live}
                if not live:
                    probe_body["batch_in_progress_s"] = batch_s
                return self.json(probe_body, status=200 if live else 503)
            ready, state = _ready(app)
            broker = await probe.check()
            lags = lag.lags()
            body = {
                "status": "ok" if live and ready and broker.get("reachable") else "unavailable",
                "live": live,
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
            return self.json(body, status=200 if body["status"] == "ok" else 503)

    @app.page("/models", name="models")
    class Models(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": worker, "models": model_report(scorer, metrics)})

    @app.page("/metrics", name="metrics")
    class PrometheusMetrics(View):
        async def get(self, request: Request) -> Any:
            # aiohttp refuses a charset inside `content_type`, so set the header itself
            return aioweb.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
