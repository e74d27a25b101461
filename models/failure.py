"""Failure prediction: the inputs both failure models read, and the online (river) classifier.

The failure models see device-normalized, metric-named inputs (`failure_inputs`), e.g.
`vibration.dmean60` = (60 s mean - the device's guarded slow baseline) / its baseline sigma. They
are computed by `FailureInputs.row` from a reading's `FeatureRow` and the detector state, so the
offline trainer (`training.train_failure`) and the worker build identical vectors.
A model applies to a device only when its readings carry every metric the model reads
(`FailureInputs.missing`); others get `failure_prob: null` with the reason, not a
probability computed from zeros (issue #11: a temperature-only corpus device was given a
failure risk from a model of four metrics it never sends).

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

import numpy as np
from river import compose, linear_model, optim, preprocessing

from edgeml.models.features import FeatureConfig, FeatureRow

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


class FailureInputs:
    """Builds failure-model input rows in the order of `names` (a model manifest's inputs).

    `row` returns the *canonical* row (for each referenced metric the `PER_METRIC` values, then
    the device-level inputs); `matrix` stacks canonical rows, clips them and reorders the
    columns into `names` order in one numpy step. Windows named `10s`/`60s` are used when
    present, else the first/last configured windows.
    """

    def __init__(self, names: Sequence[str], features: FeatureConfig) -> None:
        self.names = tuple(names)
        metrics: list[str] = []
        canonical_index: dict[str, int] = {}
        for name in self.names:
            if name in DEVICE_LEVEL:
                continue
            metric, _, kind = name.rpartition(".")
            if kind not in PER_METRIC or not metric:
                raise ValueError(
                    f"unknown failure input {name!r}: use '<metric>.<kind>' with kind in "
                    f"{', '.join(PER_METRIC)}, or one of {', '.join(DEVICE_LEVEL)}"
                )
            if metric not in metrics:
                metrics.append(metric)
        self.metrics = tuple(metrics)
        k = len(PER_METRIC)
        for i, metric in enumerate(self.metrics):
            for j, kind in enumerate(PER_METRIC):
                canonical_index[f"{metric}.{kind}"] = i * k + j
        for j, name in enumerate(DEVICE_LEVEL):
            canonical_index[name] = len(self.metrics) * k + j
        self._perm = np.array([canonical_index[n] for n in self.names], dtype=np.intp)
        self._identity = bool(np.array_equal(self._perm, np.arange(len(canonical_index))))
        self._zeros = [0.0] * k
        windows = [w.name for w in features.windows]
        short = windows.index("10s") if "10s" in windows else 0
        long = windows.index("60s") if "60s" in windows else len(windows) - 1
        self._mean10 = features.index("mean", short)
        self._mean60 = features.index("mean", long)
        self._std10 = features.index("std", short)
        self._std60 = features.index("std", long)
        self._slope60 = features.index("slope", long)
        w = features.windows[long]
        self._span60 = w.size if w.kind == "time" else 60.0

    @property
    def width(self) -> int:
        return len(self.names)

    def missing(self, feats: FeatureRow) -> tuple[str, ...]:
        """The model's metrics this reading does not carry (empty: the model applies)."""
        fm = feats.metrics
        return tuple(m for m in self.metrics if m not in fm)

    def row(
        self,
        feats: FeatureRow,
        baselines: dict[str, list[float]],
        evidence: dict[str, float],
        score: float,
    ) -> list[float]:
        """One canonical row. `baselines[m]` is the detector state (slow mean at 2, var at 3)."""
        out: list[float] = []
        fm = feats.metrics
        i10, i60, s10, s60, sl = self._mean10, self._mean60, self._std10, self._std60, self._slope60
        for metric in self.metrics:
            f = fm.get(metric)
            b = baselines.get(metric)
            if f is None or b is None or b[4] < 2.0:
                out.extend(self._zeros)
                continue
            mu = b[2]
            var = b[3]
            sd = math.sqrt(var) if var > 0.0 else 0.0
            floor = 1e-6 * (1.0 + abs(mu))
            if sd < floor:
                sd = floor
            m60 = f[i60]
            den = abs(mu) if abs(mu) > sd else sd
            out.extend(
                (
                    (f[i10] - mu) / sd,
                    (m60 - mu) / sd,
                    f[sl] * self._span60 / sd,
                    f[s10] / sd,
                    f[s60] / sd,
                    (m60 - mu) / den,
                    evidence.get(metric, 0.0),
                )
            )
        out.append(score)
        return out

    def matrix(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Canonical rows -> float32 (n, width) in `names` order, clipped to +-1e3."""
        x = np.asarray(rows, dtype=np.float32)
        np.clip(x, -1e3, 1e3, out=x)
        return x if self._identity else np.ascontiguousarray(x[:, self._perm])


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
