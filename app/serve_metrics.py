"""Prometheus metrics of an inference engine (`edgeml serve`'s `GET /metrics`, and the
worker's when its failure task runs on the engine: `app.factory`).

Counters and the latency histogram are fed by the engine's `on_call` hook (one observation
per backend call) and `on_result` hook (one per request); breaker state, health and in-flight
calls are read from the engine when Prometheus scrapes (a custom collector), so they are never
stale and cost nothing between scrapes. `edgeml serve` gives it its own `CollectorRegistry`;
the worker passes its own registry, so one `/metrics` serves both metric sets. The hooks run
on the engine's loop thread (`EngineLoop`) in a worker: prometheus_client's counters and
histograms take a lock per update, and the collector only reads.

    edgeml_inference_backend_seconds{task,backend,model}        histogram of call latency
    edgeml_inference_backend_calls_total{task,backend,model,outcome}   ok | error | timeout
    edgeml_inference_requests_total{task,outcome}              ok | failover | down
    edgeml_inference_failovers_total{task,backend}             failed calls another answered
    edgeml_inference_breaker_state{task,backend}               0 closed, 1 half-open, 2 open
    edgeml_inference_backend_healthy{task,backend}             1 / 0
    edgeml_inference_backend_in_flight{task,backend}
    edgeml_inference_task_ready{task}                          1 while a backend is healthy
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeml.models.inference import BackendCall, InferenceEngine, InferenceResult

__all__ = ["CONTENT_TYPE", "EngineMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
# 0.1 ms .. 5 s: an in-process call is ~0.05-1 ms, a remote one ~1 ms, a timeout 0.25-5 s
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0)  # fmt: skip


class _EngineState(Collector):
    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        labels = ["task", "backend"]
        state = GaugeMetricFamily(
            "edgeml_inference_breaker_state", "0 closed, 1 half-open, 2 open.", labels=labels
        )
        healthy = GaugeMetricFamily(
            "edgeml_inference_backend_healthy", "1 when calls may go to it.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "edgeml_inference_backend_in_flight", "Calls in flight.", labels=labels
        )
        ready = GaugeMetricFamily(
            "edgeml_inference_task_ready", "1 while a backend is healthy.", labels=["task"]
        )
        for task, pool in self.engine.tasks.items():
            ready.add_metric([task], 1.0 if pool.ready() else 0.0)
            for m in pool.members:
                key = [task, m.backend.name]
                state.add_metric(key, _STATE[m.health.breaker.state])
                healthy.add_metric(key, 1.0 if m.health.healthy else 0.0)
                in_flight.add_metric(key, float(m.health.in_flight))
        yield from (state, healthy, in_flight, ready)


class EngineMetrics:
    """The metric set of one engine; `observe_call` is its `on_call` hook."""

    def __init__(self, engine: InferenceEngine, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.latency = Histogram(
            "edgeml_inference_backend_seconds",
            "Backend call latency (failed calls included).",
            ["task", "backend", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.calls = Counter(
            "edgeml_inference_backend_calls",
            "Backend calls by outcome.",
            ["task", "backend", "model", "outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "edgeml_inference_requests",
            "Requests: answered first time, answered after a failover, or no answer.",
            ["task", "outcome"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "edgeml_inference_failovers",
            "Failed calls to a backend whose request another backend then answered.",
            ["task", "backend"],
            registry=self.registry,
        )
        self.registry.register(_EngineState(engine))
        engine.on_call = self.observe_call
        engine.on_result = self.observe_result

    def observe_call(self, task: str, call: BackendCall) -> None:
        self.latency.labels(task, call.backend, call.model_ref).observe(call.seconds)
        self.calls.labels(task, call.backend, call.model_ref, call.outcome).inc()

    def observe_result(self, result: InferenceResult) -> None:
        outcome = "down" if not result.ok else "failover" if result.failovers else "ok"
        self.requests.labels(result.task, outcome).inc()
        if result.ok:
            for call in result.calls:
                if not call.ok:
                    self.failovers.labels(result.task, call.backend).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
