"""Failure prediction: ONNX export parity with sklearn, the online river model's numpy fast
path, input ordering from a manifest, and the Scorer serving a registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from edgeml.models.failure import FailureInputs, OnlineFailureModel, failure_inputs
from edgeml.models.features import FeatureConfig, FeatureRow
from edgeml.models.optimize.export import check_parity, export_sklearn
from edgeml.models.registry import ModelRegistry, SessionCache, load_promoted
from edgeml.models.scoring import FAILURE_MODEL_ID, Scorer
from edgeml.sim.generator import SimConfig, simulate
from edgeml.training.train_failure import _skl2onnx_bool_fix

NAMES = failure_inputs()


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows shaped like failure inputs: positives have raised vibration/temperature deviation."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, len(NAMES))).astype(np.float32)
    y = (rng.random(n) < 0.2).astype(np.int64)
    for name in ("vibration.dmean60", "temperature.dmean60", "vibration.rel60"):
        x[y == 1, NAMES.index(name)] += 2.5
    return x, y


@pytest.fixture(scope="module")
def gbm() -> HistGradientBoostingClassifier:
    x, y = synthetic(3000, 0)
    return HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0).fit(x, y)


@pytest.fixture(scope="module")
def onnx_bytes(gbm: HistGradientBoostingClassifier) -> bytes:
    with _skl2onnx_bool_fix():
        return export_sklearn(gbm, len(NAMES))


def test_onnx_matches_sklearn(gbm: HistGradientBoostingClassifier, onnx_bytes: bytes):
    x, _ = synthetic(2000, 1)
    worst = check_parity(gbm, onnx_bytes, x, atol=1e-5)  # raises on > 1e-5 or any label flip
    assert worst <= 1e-5


def test_online_numpy_path_matches_river():
    x, y = synthetic(600, 2)
    model = OnlineFailureModel(NAMES)
    assert not model.ready
    model.learn_many(x[:500].astype(float).tolist(), (y[:500] == 1).tolist())
    assert model.ready
    fast = model.predict(x[500:].astype(np.float64))
    slow = np.array([model.predict_one(row) for row in x[500:].astype(float).tolist()])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    assert fast[y[500:] == 1].mean() > fast[y[500:] == 0].mean() + 0.3


def test_inputs_follow_manifest_order():
    config = FeatureConfig()
    canonical = FailureInputs(NAMES, config)
    other = FailureInputs(tuple(reversed(NAMES)), config)
    rng = np.random.default_rng(3)
    metrics = ("temperature", "humidity", "pressure", "vibration")
    feats = FeatureRow(
        "d", 0.0, 0, False, {m: rng.normal(10.0, 1.0, len(config.names)).tolist() for m in metrics}
    )
    baselines = {m: [10.0, 1.0, 10.0, 1.0, 100.0, 0, 0, 0, 0, 0] for m in metrics}
    evidence = {m: float(i) for i, m in enumerate(metrics)}
    a = canonical.matrix([canonical.row(feats, baselines, evidence, 0.25)])
    b = other.matrix([other.row(feats, baselines, evidence, 0.25)])
    np.testing.assert_array_equal(a[:, ::-1], b)
    assert a[0, NAMES.index("anomaly_score")] == 0.25
    assert a[0, NAMES.index("pressure.ev")] == 2.0
    with pytest.raises(ValueError, match="kind in"):
        FailureInputs(("vibration.bogus",), config)


def test_scorer_serves_the_registered_model(tmp_path: Path, onnx_bytes: bytes):
    registry = ModelRegistry(tmp_path, sessions=SessionCache())
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(onnx_bytes)
    registry.register(
        FAILURE_MODEL_ID,
        artifact,
        kind="onnx",
        inputs=NAMES,
        training_data="synthetic (test)",
        metrics={"roc_auc": 1.0, "horizon_s": 300.0},
        promote=True,
    )
    scorer = Scorer(failure_model=load_promoted(tmp_path))
    assert scorer.model_ids["failure"] == f"{FAILURE_MODEL_ID}@1"
    sim = simulate(SimConfig(devices=2, count=300, seed=4))
    states = {d.device_id: scorer.new_state(d.device_id) for d in sim.devices}
    readings = list(sim.readings())
    groups: dict[str, list] = {}
    for r in readings:
        groups.setdefault(r.device_id, []).append(r)
    batch = [(states[d], rs) for d, rs in groups.items()]
    out = [s for res in scorer.score_many(batch) for s in res]
    probs = np.array([s.failure_prob for s in out])
    assert len(out) == len(readings)
    assert np.all((probs >= 0.0) & (probs <= 1.0)) and np.isfinite(probs).all()
    assert len(set(probs.round(6).tolist())) > 1  # the model is really consulted
