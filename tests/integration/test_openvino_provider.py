"""The ONNX backend on OpenVINO's CPU plugin gives the CPU provider's scores (issue #14, item 7).

`onnxruntime-openvino` replaces the plain `onnxruntime` module, so it lives in its own venv
(`infra/venvs.py`, cached under `.cache/venv-openvino`; built on first use, and a venv that
cannot be built fails this test). There `bench/providers.py` builds each registry model's
backend through `onnx_replicas(..., providers=["openvino"])`, scores the holdout and reports
the node placement; the scores are compared with this environment's CPU session.

Models: the shipped `failure-gbm` (a TreeEnsembleClassifier: OpenVINO takes no `ai.onnx.ml`
op, so everything runs on CPU, which the placement must show), a small MLP with only its
probability output (OpenVINO runs the whole graph), and the same MLP as skl2onnx exports it
(with the `label` branch, whose unknown-rank tensors the CPU plugin refuses: the session is
made without OpenVINO and the fallback counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeml.infra.venvs import VenvError, ensure_venv
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"


@pytest.fixture(scope="session")
def openvino_python() -> Path:
    try:
        return ensure_venv("openvino")
    except VenvError as exc:
        pytest.fail(f"no OpenVINO venv: {exc}", pytrace=False)


def _scores_only(model_bytes: bytes) -> bytes:
    """The graph cut down to its `probabilities` output (the nodes it needs, nothing else)."""
    m = onnx.load_from_string(model_bytes)
    need, nodes = {"probabilities"}, []
    for node in reversed(m.graph.node):
        if any(o in need for o in node.output):
            nodes.append(node)
            need.update(node.input)
    outputs = [o for o in m.graph.output if o.name == "probabilities"]
    initializers = [i for i in m.graph.initializer if i.name in need]
    del m.graph.node[:], m.graph.output[:], m.graph.initializer[:]
    m.graph.node.extend(reversed(nodes))
    m.graph.output.extend(outputs)
    m.graph.initializer.extend(initializers)
    onnx.checker.check_model(m)
    return m.SerializeToString()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    from sklearn.neural_network import MLPClassifier

    from edgeml.models.optimize.export import export_sklearn

    root = tmp_path / "artifacts"
    seed_registry(root)
    registry = ModelRegistry(root, sessions=SessionCache())
    x, y = registry.holdout("failure-gbm")
    inputs = registry.manifest("failure-gbm").inputs
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=40, random_state=0)
    with warnings.catch_warnings():  # not converged in 40 epochs: quality is not the point
        warnings.simplefilter("ignore")
        mlp.fit(x[:2000], y[:2000])
    full = export_sklearn(mlp, x.shape[1])
    holdout = tmp_path / "holdout.npz"
    np.savez_compressed(holdout, X=x, y=y)
    for model_id, model_bytes, outputs in (
        ("mlp-scores", _scores_only(full), ["probabilities"]),
        ("mlp-full", full, None),
    ):
        artifact = tmp_path / f"{model_id}.onnx"
        artifact.write_bytes(model_bytes)
        registry.register(model_id, artifact, kind="onnx", inputs=inputs, outputs=outputs,
                          training_data="test", metrics={}, holdout=holdout, promote=True,
                          measure_latency=False)  # fmt: skip
    return registry


def test_openvino_scores_equal_cpu_scores(openvino_python: Path, registry, tmp_path: Path) -> None:
    out, scores = tmp_path / "report.json", tmp_path / "scores.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(openvino_python), str(ROOT / "bench" / "providers.py"), "--root", str(registry.root),
         "--providers", "openvino", "--json", str(out), "--scores", str(scores)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert OPENVINO in report["available"]
    cases = {(c["model"].split("@")[0], c["requested"][0]): c for c in report["cases"]}
    ov = {model: cases[(model, "openvino")] for model in ("failure-gbm", "mlp-scores", "mlp-full")}

    # placement: the tree ensemble on CPU, the scores-only MLP wholly on OpenVINO
    assert ov["failure-gbm"]["nodes_by_provider"] == {CPU: 1}
    assert set(ov["mlp-scores"]["nodes_by_provider"]) == {OPENVINO}
    assert ov["mlp-scores"]["session_providers"] == [OPENVINO, CPU]
    # the full export: OpenVINO refused the graph, the session was made on CPU and counted
    assert ov["mlp-full"]["session_providers"] == [CPU]
    assert report["fallbacks"].get(f"{OPENVINO}:failed", 0) >= 1

    # same scores as this environment's CPU session, within float32 tolerance
    with np.load(scores) as npz:
        got = {key.split("|")[0]: npz[key] for key in npz.files if key.endswith("|openvino")}
    for model_id in ("failure-gbm", "mlp-scores", "mlp-full"):
        x, _ = registry.holdout(model_id)
        want = registry.load(model_id).predict(x)
        assert got[model_id].shape == want.shape
        np.testing.assert_allclose(got[model_id], want, rtol=0, atol=1e-5, err_msg=model_id)
