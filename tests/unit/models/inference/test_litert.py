"""LiteRT: ONNX MLPs exported to .tflite score as ONNX Runtime does; what cannot map is refused."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeml.models.inference.errors import InferenceError
from edgeml.models.inference.litert import (
    LiteRTModel,
    UnsupportedGraph,
    litert_backend,
    mlp_to_tflite,
)
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry


@pytest.fixture(scope="module")
def holdout(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ModelRegistry, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("litert") / "artifacts"
    seed_registry(root)
    registry = ModelRegistry(root, sessions=SessionCache())
    x, y = registry.holdout("failure-gbm")
    return registry, x, y


def _mlp_onnx(x: np.ndarray, y: np.ndarray, *, scaler: bool, hidden=(32, 16), act="relu") -> bytes:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from edgeml.models.optimize.export import export_sklearn

    model = MLPClassifier(hidden_layer_sizes=hidden, activation=act, max_iter=30, random_state=0)
    est = make_pipeline(StandardScaler(), model) if scaler else model
    with warnings.catch_warnings():  # not converged: the scores, not their quality, are tested
        warnings.simplefilter("ignore")
        est.fit(x[:1500], y[:1500])
    return export_sklearn(est, x.shape[1])


def _onnx_scores(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": x})[0][:, 1].astype(np.float64)


@pytest.mark.parametrize(
    ("scaler", "hidden", "act"),
    [(False, (32, 16), "relu"), (True, (32, 16), "relu"), (True, (8,), "tanh")],
    ids=["mlp", "scaler+mlp", "scaler+tanh"],
)
def test_exported_mlp_scores_like_onnx_runtime(holdout, scaler, hidden, act) -> None:
    _, x, y = holdout
    model_bytes = _mlp_onnx(x, y, scaler=scaler, hidden=hidden, act=act)
    lite = LiteRTModel(mlp_to_tflite(model_bytes))
    want = _onnx_scores(model_bytes, x)
    assert lite.width == x.shape[1]
    for rows in (x[:1], x[:64], x, x[:3]):  # the input is resized whenever the batch changes
        got = lite.predict(rows)
        assert got.shape == (len(rows),)
        np.testing.assert_allclose(got, want[: len(rows)], rtol=0, atol=1e-5)
    assert float(np.std(want)) > 1e-3  # a constant model would pass the comparison blindly


def test_a_tree_ensemble_is_refused_by_name(holdout) -> None:
    registry, _, _ = holdout
    with pytest.raises(UnsupportedGraph, match=r"TreeEnsembleClassifier \(ai.onnx.ml\)"):
        mlp_to_tflite(registry.model_bytes("failure-gbm"))


def test_bad_input_is_a_clear_error(holdout) -> None:
    _, x, y = holdout
    lite = LiteRTModel(mlp_to_tflite(_mlp_onnx(x, y, scaler=False, hidden=(4,))))
    with pytest.raises(InferenceError, match=r"takes \(n, 29\), got \[2, 3\]"):
        lite.predict(np.zeros((2, 3), np.float32))


def test_the_backend_answers_scores_through_its_thread(holdout) -> None:
    _, x, y = holdout
    model_bytes = _mlp_onnx(x, y, scaler=True, hidden=(8,))
    backend = litert_backend(
        LiteRTModel(mlp_to_tflite(model_bytes)), name="mlp@1#0", model_ref="mlp@1"
    )
    assert backend.signature.refuses({"input": x[:5]}) is None
    assert backend.signature.refuses({"input": x[:5, :3]}) is not None
    out = asyncio.run(backend.infer({"input": x[:100]}))
    asyncio.run(backend.close())
    np.testing.assert_allclose(out["score"], _onnx_scores(model_bytes, x[:100]), atol=1e-5)
    assert backend.metadata["kind"] == "litert"


def test_a_tflite_file_round_trips(holdout, tmp_path: Path) -> None:
    _, x, y = holdout
    path = tmp_path / "model.tflite"
    path.write_bytes(mlp_to_tflite(_mlp_onnx(x, y, scaler=False, hidden=(4,))))
    assert path.read_bytes()[4:8] == b"TFL3"  # the flatbuffer file identifier
    assert LiteRTModel(path.read_bytes()).predict(x[:2]).shape == (2,)
