"""A verified model ready to score (`LoadedModel`): an ONNX session or a river estimator,
read as scores per task (classifier: positive-class probability, regressor, scorer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeml.models.manifest import ModelManifest, SchemaMismatch
from edgeml.models.registry.sessions import ModelMemory

__all__ = ["LoadedModel", "score_output_name", "to_scores"]


class LoadedModel:
    """A verified model ready to score: `predict((n, k) float32) -> (n,)` scores.

    For classifiers the score is the positive-class probability; for regressors the prediction;
    for scorers (river anomaly models) the anomaly score. Created by `ModelRegistry.load`.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        path: Path,
        memory: ModelMemory,
        *,
        session: Any = None,
        estimator: Any = None,
    ) -> None:
        self.manifest = manifest
        self.path = path
        self.memory = memory
        self.session = session
        self.estimator = estimator
        self._width = len(manifest.inputs)
        self._input_name = ""
        self._output_name = ""
        if session is not None:
            self._input_name = session.get_inputs()[0].name
            self._output_name = score_output_name(session, manifest.task)

    def __repr__(self) -> str:
        return f"LoadedModel({self.manifest.ref}, sha256={self.manifest.sha256[:12]})"

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self._width:
            raise SchemaMismatch(
                f"{self.manifest.ref} takes {self._width} features "
                f"({', '.join(self.manifest.inputs)}), got shape {x.shape}"
            )
        if self.session is not None:
            out = self.session.run([self._output_name], {self._input_name: x})[0]
            return to_scores(out, self.manifest.task)
        return self._predict_river(x)

    def _predict_river(self, x: np.ndarray) -> np.ndarray:
        names = self.manifest.inputs
        est = self.estimator
        scores = np.empty(len(x), dtype=np.float64)
        for i, row in enumerate(x):
            sample = dict(zip(names, row.tolist(), strict=True))
            if self.manifest.task == "classifier":
                proba = est.predict_proba_one(sample)
                scores[i] = float(proba.get(True, proba.get(1, 0.0)))
            elif self.manifest.task == "scorer":
                scores[i] = float(est.score_one(sample))
            else:
                scores[i] = float(est.predict_one(sample))
        return scores


def score_output_name(session: Any, task: str) -> str:
    """The session output `predict` reads: class probabilities for classifiers, else the first."""
    outputs = session.get_outputs()
    if task == "classifier":
        for out in outputs:
            if "prob" in out.name.lower():
                return str(out.name)
        if len(outputs) > 1:
            return str(outputs[1].name)
    return str(outputs[0].name)


def to_scores(out: Any, task: str) -> np.ndarray:
    """(n,) float64 scores from that output: positive-class column, prediction or score."""
    if isinstance(out, list):  # ZipMap output: one {label: prob} dict per row
        return np.array([row[max(row)] for row in out], dtype=np.float64)
    arr = np.asarray(out)
    if task == "classifier" and arr.ndim == 2 and arr.shape[1] > 1:
        return arr[:, -1].astype(np.float64)
    return arr.reshape(len(arr), -1)[:, 0].astype(np.float64)


def _check_graph_inputs(manifest: ModelManifest, session: Any) -> None:
    graph_inputs = session.get_inputs()
    if len(graph_inputs) != 1:
        names = [i.name for i in graph_inputs]
        raise SchemaMismatch(f"{manifest.ref}: expected one tensor input, graph has {names}")
    shape = graph_inputs[0].shape
    width = shape[-1] if shape else None
    if isinstance(width, int) and width != len(manifest.inputs):
        raise SchemaMismatch(
            f"{manifest.ref}: graph input width is {width}, manifest names "
            f"{len(manifest.inputs)} inputs"
        )
