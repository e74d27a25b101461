"""The offline jobs of `training/` at a small size: train, export and register the failure
model; compare model families; evaluate the Scorer on the simulator.

Sizes are the smallest that still hold a device failure in both the training seeds and the
holdout seeds (3 devices x 1500 readings: seeds 2 and 8 fail), so ROC AUC is defined; the
whole module runs in about 30 s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeml.models.failure import failure_inputs
from edgeml.models.registry import ModelRegistry
from edgeml.models.scoring import FAILURE_MODEL_ID
from edgeml.sim.generator import SimConfig, simulate
from edgeml.training import evaluate_offline, train_failure

DEVICES, COUNT = 3, 1500
SIZE = ["--devices", str(DEVICES), "--count", str(COUNT)]


def test_build_dataset_labels_the_horizon_before_each_failure() -> None:
    x, y, names = train_failure.build_dataset((8,), devices=DEVICES, count=COUNT, negative_stride=1)
    sim = simulate(SimConfig(devices=DEVICES, count=COUNT, seed=8))
    failures = [i for i in sim.incidents if i.failure_ts is not None]
    assert failures, "seed 8 must hold a failure at this size"
    # One row per reading (stride 1, maintenance events are not readings), 1 Hz readings: the
    # positives are the readings in [failure - horizon, failure) of each failing device.
    assert x.shape == (DEVICES * COUNT, len(names)) and x.dtype == np.float32
    assert y.dtype == np.int8 and set(np.unique(y)) <= {0, 1}
    assert names == failure_inputs()
    assert int(y.sum()) == pytest.approx(len(failures) * train_failure.HORIZON_S, abs=2)

    _, y_strided, _ = train_failure.build_dataset(
        (8,), devices=DEVICES, count=COUNT, negative_stride=4
    )
    assert int(y_strided.sum()) == int(y.sum())  # every positive kept
    assert len(y_strided) - int(y_strided.sum()) == (len(y) - int(y.sum())) // 4


def test_main_trains_registers_and_promotes_and_a_cached_rerun_trains_the_same_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_root, cache = tmp_path / "registry", tmp_path / "cache"
    args = [*SIZE, "--registry", str(registry_root), "--cache", str(cache)]
    assert train_failure.main(args) == 0
    first = capsys.readouterr().out
    assert (cache / f"failure-{DEVICES}x{COUNT}.npz").is_file()

    registry = ModelRegistry(registry_root)
    version = registry.promoted_version(FAILURE_MODEL_ID)
    assert version is not None
    manifest = registry.manifest(FAILURE_MODEL_ID)
    assert f"registered {manifest.ref} ({manifest.size_bytes} bytes), promoted" in first
    assert manifest.kind == "onnx"
    assert manifest.inputs == failure_inputs()
    assert manifest.metrics["horizon_s"] == train_failure.HORIZON_S
    assert 0.5 < manifest.metrics["roc_auc"] <= 1.0
    assert manifest.metrics["onnx_parity_max_abs_diff"] <= 1e-5
    x_holdout, y_holdout = registry.holdout(FAILURE_MODEL_ID)
    assert x_holdout.shape[1] == len(manifest.inputs)
    assert 0 < int(y_holdout.sum()) < len(y_holdout)

    session = ort.InferenceSession(registry.model_bytes(FAILURE_MODEL_ID))
    probabilities = [o.name for o in session.get_outputs() if "prob" in o.name.lower()]
    (prob,) = session.run(probabilities, {session.get_inputs()[0].name: x_holdout})
    assert prob.shape == (len(y_holdout), 2)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)

    assert train_failure.main([*args, "--no-register"]) == 0
    second = capsys.readouterr().out
    assert "building training data" not in second  # the datasets came from the cache
    quality = re.compile(r"hist_gbm: holdout ROC AUC \S+, F1 \S+; ONNX \d+ KB")
    trained, retrained = quality.search(first), quality.search(second)
    assert trained is not None and retrained is not None, (first, second)
    assert retrained[0] == trained[0]  # same data, same seed: the same model
    assert registry.versions(FAILURE_MODEL_ID) == [version]  # --no-register added nothing


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # mlp: 300 rows
def test_benchmark_reports_every_family_with_its_onnx_figures() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0.8).astype(np.int8)
    rows = train_failure.benchmark(x[:300], y[:300], x[300:], y[300:])
    assert [row["model"] for row in rows] == ["hist_gbm", "gbm", "random_forest", "mlp"]
    for row in rows:
        assert 0.8 < row["roc_auc"] <= 1.0, row  # x[:, 0] separates the classes
        assert row["onnx_kb"] > 0 and row["onnx_single_p50_us"] > 0, row


def test_evaluate_offline_scores_each_seed_and_pools_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = tmp_path / "figures.json"
    code = evaluate_offline.main(
        ["--seeds", "8", "2", *SIZE, "--no-registry", "--json", str(figures)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("seed ")] == [
        "seed 8",
        "seed 2",
    ]
    summary = json.loads(figures.read_text())
    assert summary["seeds"] == [8, 2]
    assert "failure" not in summary["models"]  # --no-registry: no offline failure model
    sims = [simulate(SimConfig(devices=DEVICES, count=COUNT, seed=s)) for s in (8, 2)]
    assert summary["incidents"] == sum(len(sim.incidents) for sim in sims)
    assert summary["failures"] == sum(i.failure_ts is not None for s in sims for i in s.incidents)
    assert summary["incident_recall"] is not None and 0 < summary["incident_recall"] <= 1

    single = evaluate_offline.run_seed(8, devices=DEVICES, count=COUNT)
    assert single.report["readings"] == DEVICES * COUNT
    assert single.report["missing"] == 0 and single.report["duplicates"] == 0
    assert single.us_per_reading > 0
