"""Scrape-time collectors of model-serving counters that other objects keep, for the worker's
`/metrics` (`app.metrics.Metrics` registers them): a challenger's shadow scoring
(`ShadowStats`) and ONNX Runtime execution-provider fallbacks (`providers.FALLBACKS`).

Both read counters their owners already keep, when Prometheus scrapes: nothing is added to
the batch path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    from edgeml.models.inference.shadow import ShadowScorer

__all__ = ["ProviderFallbacks", "ShadowCollector"]


class ShadowCollector:
    """`edgeml_shadow_batches{challenger,outcome}` and `edgeml_shadow_rows{challenger,outcome}`
    (counters) read from `ShadowScorer.stats` at scrape time: the shadow thread already counts
    them, so nothing is added to the batch path. Outcomes are `ShadowStats`' fields."""

    BATCHES = "edgeml_shadow_batches"
    ROWS = "edgeml_shadow_rows"

    def __init__(self, shadow: ShadowScorer) -> None:
        self.shadow = shadow

    def _families(self) -> tuple[CounterMetricFamily, CounterMetricFamily]:
        labels = ["challenger", "outcome"]
        return (
            CounterMetricFamily(self.BATCHES, "Shadow scoring batches, by outcome: submitted, "
                                "dropped (queue full: challenger behind), refused (malformed), "
                                "compared, challenger_error, champion_error, outbox_dropped.",
                                labels=labels),
            CounterMetricFamily(self.ROWS, "Shadow scoring rows, by outcome: submitted, "
                                "dropped (queue full).", labels=labels),
        )  # fmt: skip

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        batches, rows = self._families()
        s, ref = self.shadow.stats, self.shadow.challenger.ref
        for outcome, n in (
            ("submitted", s.submitted), ("dropped", s.dropped), ("refused", s.refused),
            ("compared", s.compared), ("challenger_error", s.challenger_errors),
            ("champion_error", s.champion_errors), ("outbox_dropped", s.outbox_dropped),
        ):  # fmt: skip
            batches.add_metric([ref, outcome], n)
        rows.add_metric([ref, "submitted"], s.rows)
        rows.add_metric([ref, "dropped"], s.dropped_rows)
        return [batches, rows]


class ProviderFallbacks:
    """`edgeml_provider_fallbacks{provider,reason}`: wished ONNX Runtime execution providers
    dropped (`models.inference.providers.FALLBACKS`: missing, failed, not started), read at
    scrape time. The module is looked up, not imported: importing `models.inference` costs
    ~90 ms, and a process that never imported it has resolved no provider, so has none."""

    NAME = "edgeml_provider_fallbacks"
    HELP = "Wished execution providers this process fell back from, by provider and reason."

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.NAME, self.HELP, labels=["provider", "reason"])]

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=["provider", "reason"])
        providers = sys.modules.get("edgeml.models.inference.providers")
        for (provider, reason), n in sorted(getattr(providers, "FALLBACKS", {}).items()):
            family.add_metric([provider, reason], n)
        return [family]
