"""Prometheus metrics of one worker, fed once per scored batch (`GET /metrics` serves them).

`Metrics` owns a `CollectorRegistry` (one per app, so tests can build many apps) and is a
`BatchObserver` of `score_readings`. Counters move once per batch; the per-reading
distributions (end-to-end latency, anomaly score) go through `BatchHistogram`, which folds a
batch's values with one `bisect` each and no lock per value. Model latency comes from the
Scorer's `on_model_call` hook (`Metrics.observe_model`: each failure-model call, and the rest of
each `score_many` call as the anomaly model); consumer lag is computed from the consumer's
positions when Prometheus scrapes.

When the failure task runs on the inference engine, `observe_engine` adds the engine's own
metric set (`edgeml_inference_*`, `app.serve_metrics`) to the same registry; with a challenger
(`Settings.failure_challenger`), `observe_shadow` adds its counters (`edgeml_shadow_*`). ONNX
Runtime execution-provider fallbacks (`edgeml_provider_fallbacks`) are always exported.

Every name exported here is what `infra/prometheus/rules.yml` and the Grafana dashboards use
(a test checks that).
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import faust
import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from edgeml.app.model_metrics import ProviderFallbacks, ShadowCollector
from edgeml.models.pipeline import BatchResult
from edgeml.models.scoring import ScoredReading

if TYPE_CHECKING:
    from edgeml.app.serve_metrics import EngineMetrics
    from edgeml.models.inference import InferenceEngine
    from edgeml.models.inference.shadow import ShadowScorer

__all__ = [
    "CONTENT_TYPE",
    "BatchHistogram",
    "LagCollector",
    "Metrics",
    "ModelLatency",
    "guarded",
    "iter_metric_names",
    "split_ref",
]

log = logging.getLogger(__name__)

# What `generate_latest` writes for ASCII metric names, and what every Prometheus 2.x reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MODEL_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05,
                 0.1, 0.25, 1.0)  # fmt: skip
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class BatchHistogram:
    """A Prometheus histogram fed many values at once (a custom collector).

    `observe_many(values, *labels)` costs one C `bisect` and one list increment per value;
    the cumulative buckets are built only when Prometheus scrapes. Single-threaded use (the
    worker's event loop), like the rest of the worker.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = sorted(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], list[Any]] = {}  # labels -> [counts, sum]
        if not self.labelnames:
            self._counts(())  # exported (all zero) from the start, like prometheus_client's
        if registry is not None:
            registry.register(self)

    def _counts(self, labels: tuple[str, ...]) -> list[Any]:
        series = self._series.get(labels)
        if series is None:
            if len(labels) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
            series = self._series[labels] = [[0] * (len(self._bounds) + 1), 0.0]
        return series

    def observe_many(self, values: Iterable[float], *labels: str) -> None:
        series = self._counts(labels)
        counts, bounds = series[0], self._bounds
        total = 0.0
        for value in values:
            if value != value:  # NaN: no bucket holds it
                continue
            counts[bisect_left(bounds, value)] += 1
            total += value
        series[1] += total

    def observe(self, value: float, *labels: str) -> None:
        self.observe_many((value,), *labels)

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, (counts, total) in sorted(self._series.items()):
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip([*self._bounds, math.inf], counts, strict=True):
                running += n
                buckets.append((floatToGoString(bound), running))
            family.add_metric(list(labels), buckets, total)
        return [family]


def split_ref(ref: str) -> tuple[str, str]:
    """`"failure-gbm@3"` -> `("failure-gbm", "3")`."""
    model, _, version = ref.rpartition("@")
    return (model, version) if model else (ref, "")


class ModelLatency:
    """Recent inference latencies per model ref (for `/models`), beside the histogram."""

    def __init__(self, keep: int = 2048) -> None:
        self.keep = keep
        self.recent: dict[str, deque[float]] = {}
        self.calls: dict[str, int] = {}

    def add(self, ref: str, seconds: float) -> None:
        recent = self.recent.get(ref)
        if recent is None:
            recent = self.recent[ref] = deque(maxlen=self.keep)
        recent.append(seconds)
        self.calls[ref] = self.calls.get(ref, 0) + 1

    def summary(self, ref: str) -> dict[str, Any]:
        recent = self.recent.get(ref)
        if not recent:
            return {"calls": 0}
        p50, p99 = np.percentile(np.fromiter(recent, float), [50, 99]) * 1000.0
        return {"calls": self.calls[ref], "p50_ms": float(p50), "p99_ms": float(p99)}


class LagCollector:
    """`edgeml_consumer_lag{topic,partition}` at scrape time: the partition's high watermark
    minus the next offset this worker will process, for the assigned partitions of `topics`."""

    def __init__(self, app: faust.App, topics: Callable[[], set[str]]) -> None:
        self.app = app
        self.topics = topics

    def lags(self) -> dict[tuple[str, int], int]:
        app = self.app
        try:
            assignment = app.consumer.assignment()
        except Exception:  # consumer not started (tests, start-up)
            return {}
        wanted = self.topics()
        read = app.monitor.tp_read_offsets
        committed = app.monitor.tp_committed_offsets
        out: dict[tuple[str, int], int] = {}
        for tp in assignment:
            if tp.topic not in wanted:
                continue
            try:
                end = app.consumer.highwater(tp)
            except Exception:  # revoked since `assignment()` (a rebalance): no gauge this scrape
                log.debug("no high watermark for %s", tp, exc_info=True)
                continue
            if end is None:
                continue
            position = read[tp] + 1 if tp in read else committed.get(tp)
            if position is None:
                continue
            out[(tp.topic, tp.partition)] = max(int(end) - int(position), 0)
        return out

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("edgeml_consumer_lag", "", labels=["topic", "partition"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "edgeml_consumer_lag",
            "Messages not yet processed, per assigned input partition.",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self.lags().items()):
            family.add_metric([topic, str(partition)], lag)
        return [family]


class Metrics:
    """The worker's Prometheus metrics. `observe_batch` is a `BatchObserver`; `render()` is
    the exposition `GET /metrics` serves. Created once per app by `create_app`."""

    def __init__(self, app_id: str = "edgeml") -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu, fds
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        info = Gauge("edgeml_worker_info", "Constant 1 per worker.", ["app_id"], registry=registry)
        info.labels(app_id).set(1)
        self.messages_in = Counter(
            "edgeml_messages_in", "Input messages consumed, per topic.", ["topic"],
            registry=registry,
        )  # fmt: skip
        self.readings_in = Counter(
            "edgeml_readings_in", "Valid readings consumed, per topic.", ["topic"],
            registry=registry,
        )  # fmt: skip
        self.predictions = Counter(
            "edgeml_predictions", "Predictions produced (one per valid reading).",
            registry=registry,
        )  # fmt: skip
        self.anomalies = Counter(
            "edgeml_anomalies", "Readings scored as anomalous.", registry=registry
        )
        self.alerts = Counter(
            "edgeml_alerts", "Alert lifecycle events produced.", ["state", "severity"],
            registry=registry,
        )  # fmt: skip
        self.dead_letters = Counter(
            "edgeml_dead_letters", "Messages dead-lettered, per error class.", ["error_class"],
            registry=registry,
        )  # fmt: skip
        self.late = Counter(
            "edgeml_late_readings", "Readings older than the window grace.", registry=registry
        )
        self.redelivered = Counter(
            "edgeml_redelivered_readings",
            "Readings whose (device, seq) was already applied: not scored again, no prediction.",
            registry=registry,
        )
        self.scoring_errors = Counter(
            "edgeml_scoring_errors",
            "Devices whose scoring raised: their readings went to the DLQ, their state was reset.",
            registry=registry,
        )
        self.state_errors = Counter(
            "edgeml_state_errors",
            "Device states that could not be loaded and were replaced by a fresh one.",
            registry=registry,
        )
        self.observer_errors = Counter(
            "edgeml_observer_errors", "Batch observers that raised (scoring went on).",
            ["observer"], registry=registry,
        )  # fmt: skip
        self.sse_clients = Gauge(
            "edgeml_sse_clients", "Browsers following the live alert stream.", registry=registry
        )
        self.batch_size = BatchHistogram(
            "edgeml_batch_messages", "Messages per scoring batch.", BATCH_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.processing = BatchHistogram(
            "edgeml_processing_seconds",
            "Per batch: from its oldest message entering the worker to its outputs being ready.",
            LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.end_to_end = BatchHistogram(
            "edgeml_end_to_end_seconds",
            "Per reading: from the producer's sent_at to scored (wall clock).",
            LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.anomaly_score = BatchHistogram(
            "edgeml_anomaly_score", "Anomaly score of each reading.", SCORE_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.model_inference = BatchHistogram(
            "edgeml_model_inference_seconds",
            "Model inference time per call (per batch), by model and version.",
            MODEL_BUCKETS, ["model", "version"], registry=registry,
        )  # fmt: skip
        self.model_latency = ModelLatency()
        registry.register(ProviderFallbacks())
        self.engine: EngineMetrics | None = None  # `observe_engine`
        self.shadow: ShadowCollector | None = None  # `observe_shadow`
        self._topic_children: dict[str, tuple[Any, Any]] = {}

    def add_lag(self, app: faust.App, topics: Callable[[], set[str]]) -> LagCollector:
        collector = LagCollector(app, topics)
        self.registry.register(collector)
        return collector

    def observe_engine(self, engine: InferenceEngine) -> EngineMetrics:
        """Export an inference engine's metrics here too (`app.serve_metrics`: per backend
        latency, calls by outcome, failovers, breaker state, health, in flight, task ready):
        the worker's failure task when it runs on the engine (`app.factory`)."""
        from edgeml.app.serve_metrics import EngineMetrics

        self.engine = EngineMetrics(engine, registry=self.registry)
        return self.engine

    def observe_shadow(self, shadow: ShadowScorer) -> ShadowCollector:
        """Export a challenger's shadow scoring counters here (`app.factory`, when
        `Settings.failure_challenger` is set)."""
        self.shadow = ShadowCollector(shadow)
        self.registry.register(self.shadow)
        return self.shadow

    def observe_model(self, ref: str, seconds: float) -> None:
        self.model_inference.observe(seconds, *split_ref(ref))
        self.model_latency.add(ref, seconds)

    def observe_batch(self, result: BatchResult, events: Sequence[faust.EventT]) -> None:
        if not events:
            return
        topic = events[0].message.topic
        children = self._topic_children.get(topic)
        if children is None:
            children = (self.messages_in.labels(topic), self.readings_in.labels(topic))
            self._topic_children[topic] = children
        children[0].inc(len(events))
        self.batch_size.observe(len(events))
        oldest = min((e.message.time_in for e in events if e.message.time_in), default=None)
        if oldest is not None:
            self.processing.observe(max(time.monotonic() - oldest, 0.0))
        if result.readings:
            children[1].inc(result.readings)
            self.predictions.inc(result.readings)
            self._per_reading(result.scored)
        if result.late:
            self.late.inc(result.late)
        if result.redelivered:
            self.redelivered.inc(result.redelivered)
        if result.scoring_errors:
            self.scoring_errors.inc(result.scoring_errors)
        if result.state_errors:
            self.state_errors.inc(result.state_errors)
        if result.alerts or result.dead_letters:
            self._alerts_and_rejections(result)

    def _per_reading(self, scored: Sequence[ScoredReading]) -> None:
        now = time.time()
        scores = [o.anomaly_score for o in scored]
        self.anomaly_score.observe_many(scores)
        anomalies = sum(o.is_anomaly for o in scored)
        if anomalies:
            self.anomalies.inc(anomalies)
        self.end_to_end.observe_many(
            now - sent for sent in (o.reading.sent_at for o in scored) if sent is not None
        )

    def _alerts_and_rejections(self, result: BatchResult) -> None:
        """Alerts by state and severity, dead letters by error class: read from the records
        the pipeline keeps (`alert_events`, `rejections`), not by parsing its output bytes."""
        for alert in result.alert_events:
            self.alerts.labels(alert.state, alert.severity).inc()
        for rejected in result.rejections:
            self.dead_letters.labels(rejected.error_class).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def guarded(
    observer: Callable[[BatchResult, Sequence[faust.EventT]], None],
    name: str,
    metrics: Metrics,
) -> Callable[[BatchResult, Sequence[faust.EventT]], None]:
    """An observer that never stops scoring: an exception is counted
    (`edgeml_observer_errors`) and logged with its traceback (first, then every 100th)."""
    errors = metrics.observer_errors.labels(name)
    failures = 0

    def observe(result: BatchResult, events: Sequence[faust.EventT]) -> None:
        nonlocal failures
        try:
            observer(result, events)
        except Exception:
            failures += 1
            errors.inc()
            if failures % 100 == 1:
                log.exception("batch observer %s failed (%d so far)", name, failures)

    return observe


def iter_metric_names(exposition: str) -> Iterator[str]:
    """Sample names in a Prometheus text exposition (`x_bucket`, `x_total`, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            yield sample.name
