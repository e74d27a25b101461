"""Failure prediction: the inputs both failure models read, and the online (river) classifier.

The failure models see device-normalized, metric-named inputs (`failure_inputs`), e.g.
`vibration.dmean60` = (60 s mean - the device's guarded slow baseline) / its baseline sigma. They
are computed by `FailureInputs.row` from a reading's `FeatureRow` and the detector state, so the
offline trainer (`models.training.train_failure`) and the worker build identical vectors.
A metric a device does not send reads as 0 ("no deviation").

`OnlineFailureModel` is a river `StandardScaler | LogisticRegression` that learns from delayed
`maintenance-events`: each device keeps a few recent input rows (one every `every_s` seconds of
event time); a `failure` labels the rows in the `horizon_s` before it positive and older rows
negative; rows that age past `horizon_s + label_delay_s` without a failure are negatives.
Prediction is vectorized (numpy over a snapshot of river's weights), so it costs well under a
microsecond per row in a batch; `predict_one` via river is kept for the parity test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from river import compose, linear_model, optim, preprocessing

from models.features import FeatureConfig, FeatureRow

__all__ = [
    "DEFAULT_FAILURE_METRICS",
    "PER_METRIC",
    "FailureInputs",
    "OnlineFailureModel",
    "failure_inputs",
]

DEFAULT_FAILURE_METRICS = ("temperature", "humidity", "pressure", "vibration")
PER_METRIC = ("dmean10", "dmean60", "slope60", "std10r", "std60r", "rel60", "ev")
DEVICE_LEVEL = ("anomaly_score",)


def failure_inputs(metrics: Sequence[str] = DEFAULT_FAILURE_METRICS) -> tuple[str, ...]:
    """The input names of a failure model over `metrics`: `<metric>.<kind>`, then device-level."""
    return tuple(f"{m}.{k}" for m in metrics for k in PER_METRIC) + DEVICE_LEVEL


@dataclass(frozen=True, slots=True)
class _Slot:
    metric: str
    kind: int  # index into PER_METRIC, or -1 for a device-level input


class FailureInputs:
    """Builds failure-model input rows in the order of `names` (a model manifest's inputs).

    Needs the feature layout (which windows exist); windows named `10s`/`60s` are used when
    present, else the first/last configured windows.
    """

    def __init__(self, names: Sequence[str], features: FeatureConfig) -> None:
        self.names = tuple(names)
        slots: list[_Slot] = []
        for name in self.names:
            if name in DEVICE_LEVEL:
                slots.append(_Slot("", -1))
                continue
            metric, _, kind = name.rpartition(".")
            if kind not in PER_METRIC or not metric:
                raise ValueError(
                    f"unknown failure input {name!r}: use '<metric>.<kind>' with kind in "
                    f"{', '.join(PER_METRIC)}, or one of {', '.join(DEVICE_LEVEL)}"
                )
            slots.append(_Slot(metric, PER_METRIC.index(kind)))
        self._slots = tuple(slots)
        windows = [w.name for w in features.windows]
        short = windows.index("10s") if "10s" in windows else 0
        long = windows.index("60s") if "60s" in windows else len(windows) - 1
        self._mean10 = features.index("mean", short)
        self._mean60 = features.index("mean", long)
        self._std10 = features.index("std", short)
        self._std60 = features.index("std", long)
        self._slope60 = features.index("slope", long)
        self._span60 = features.windows[long].size if features.windows[long].kind == "time" else 60

    @property
    def width(self) -> int:
        return len(self.names)

    def row(
        self,
        feats: FeatureRow,
        baselines: dict[str, list[float]],
        evidence: dict[str, float],
        score: float,
    ) -> list[float]:
        """One input row. `baselines[m]` is the detector state (slow mean at 2, var at 3)."""
        out: list[float] = []
        cache: dict[str, list[float]] = {}
        for slot in self._slots:
            if slot.kind < 0:
                out.append(score)
                continue
            vals = cache.get(slot.metric)
            if vals is None:
                vals = cache[slot.metric] = self._metric(
                    feats.metrics.get(slot.metric),
                    baselines.get(slot.metric),
                    evidence.get(slot.metric, 0.0),
                )
            out.append(vals[slot.kind])
        return out

    def _metric(self, f: list[float] | None, b: list[float] | None, ev: float) -> list[float]:
        if f is None or b is None or b[4] < 2.0:
            return [0.0] * len(PER_METRIC)
        mu = b[2]
        sd = math.sqrt(b[3]) if b[3] > 0.0 else 0.0
        sd = max(sd, 1e-6 * (1.0 + abs(mu)))
        m10 = f[self._mean10]
        m60 = f[self._mean60]
        den = max(abs(mu), sd)
        return [
            _clip((m10 - mu) / sd),
            _clip((m60 - mu) / sd),
            _clip(f[self._slope60] * self._span60 / sd),
            _clip(f[self._std10] / sd),
            _clip(f[self._std60] / sd),
            _clip(m60 / den - mu / den),
            _clip(ev),
        ]


def _clip(x: float, bound: float = 1e3) -> float:
    return bound if x > bound else (-bound if x < -bound else x)


class OnlineFailureModel:
    """river `StandardScaler | LogisticRegression`, learned from delayed maintenance labels.

    Process-wide (one per Scorer). `learn_many(rows, labels)` learns; `predict(x)` scores a
    batch with numpy from a weight snapshot refreshed after each learning step.
    """

    def __init__(self, names: Sequence[str], *, lr: float = 0.02, l2: float = 1e-4) -> None:
        self.names = tuple(names)
        self.model = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2),
        )
        self.positives = 0
        self.negatives = 0
        self.failures = 0
        self._mean = np.zeros(len(self.names))
        self._inv_std = np.zeros(len(self.names))
        self._w = np.zeros(len(self.names))
        self._b = 0.0

    @property
    def ready(self) -> bool:
        return self.positives >= 5 and self.negatives >= 20

    def learn_many(self, rows: Sequence[Sequence[float]], labels: Sequence[bool]) -> None:
        for row, label in zip(rows, labels, strict=True):
            self.model.learn_one(dict(zip(self.names, row, strict=True)), bool(label))
            if label:
                self.positives += 1
            else:
                self.negatives += 1
        self._snapshot()

    def _snapshot(self) -> None:
        scaler = self.model.steps["StandardScaler"]
        lr = self.model.steps["LogisticRegression"]
        self._mean = np.array([scaler.means.get(n, 0.0) for n in self.names])
        var = np.array([scaler.vars.get(n, 0.0) for n in self.names])
        self._inv_std = np.where(var > 0.0, 1.0 / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
        self._w = np.array([lr.weights.get(n, 0.0) for n in self.names])
        self._b = float(lr.intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(failure within the horizon) for each row of `x` (n, k)."""
        z = ((x - self._mean) * self._inv_std) @ self._w + self._b
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))

    def predict_one(self, row: Sequence[float]) -> float:
        """The same through river (slow path, for parity checks)."""
        proba = self.model.predict_proba_one(dict(zip(self.names, row, strict=True)))
        return float(proba.get(True, 0.0))
