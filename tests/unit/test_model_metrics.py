"""`app.model_metrics`: a challenger's `ShadowStats` and the execution-provider `FALLBACKS`
on the worker's `/metrics`, read at scrape time."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgeml.app.metrics import Metrics, iter_metric_names
from edgeml.models.inference import providers
from edgeml.models.inference.shadow import ShadowScorer


class Half:
    def __init__(self, ref: str) -> None:
        self.ref = ref

    def predict(self, features: np.ndarray) -> np.ndarray:
        return features[:, 0] / 2.0


class Fails(Half):
    def predict(self, features: np.ndarray) -> np.ndarray:
        raise RuntimeError("down")


def _value(text: str, series: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(series + " ")]
    return float(line.rsplit(" ", 1)[1])


def test_shadow_counters_follow_the_shadow_stats() -> None:
    metrics = Metrics("t")
    shadow = ShadowScorer(Fails("m@3"), champion=Half("m@2"))
    try:
        metrics.observe_shadow(shadow)
        keys = [("d", i, float(i)) for i in range(4)]
        assert shadow.submit(np.ones((4, 2), np.float32), keys=keys)
        assert not shadow.submit(np.ones((3, 2), np.float32), keys=keys)  # 3 rows, 4 keys
        assert shadow.wait_idle(10.0)
    finally:
        shadow.close()
    text = metrics.render().decode()
    batches = 'edgeml_shadow_batches_total{challenger="m@3",outcome="%s"}'
    assert _value(text, batches % "submitted") == 1.0
    assert _value(text, batches % "refused") == 1.0
    assert _value(text, batches % "compared") == 1.0
    assert _value(text, batches % "challenger_error") == 1.0
    assert _value(text, batches % "dropped") == 0.0
    assert _value(text, 'edgeml_shadow_rows_total{challenger="m@3",outcome="submitted"}') == 4.0


def test_provider_fallbacks_are_exported_by_provider_and_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = Metrics("t")
    monkeypatch.setattr(providers, "FALLBACKS", Counter())  # none yet in this process
    assert "edgeml_provider_fallbacks_total" not in set(
        iter_metric_names(metrics.render().decode())
    )
    providers.FALLBACKS[("OpenVINOExecutionProvider", "missing")] += 2
    text = metrics.render().decode()
    series = (
        'edgeml_provider_fallbacks_total{provider="OpenVINOExecutionProvider",reason="missing"}'
    )
    assert _value(text, series) == 2.0


def test_a_worker_without_a_challenger_exports_no_shadow_series() -> None:
    assert "edgeml_shadow" not in Metrics("t").render().decode()
