"""Optimizer: exact exports, transforms that keep their meaning, measured reports, the budget,
and the `edgeml optimize` / `edgeml models` commands. No timing assertions: figures only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgeml.app.cli import cli
from edgeml.models.manifest import QualityBudgetExceeded, TamperedArtifact
from edgeml.models.optimize import transforms, zoo
from edgeml.models.optimize.export import (
    check_parity,
    export_sklearn,
    scrub_denormals,
    scrub_onnx_denormals,
)
from edgeml.models.optimize.pipeline import STEPS, optimize, parse_steps
from edgeml.models.registry import ModelRegistry, SessionCache

FAST = {"timing_s": 0.01, "rounds": 1}


@pytest.fixture(scope="module")
def demos() -> dict[str, zoo.Demo]:
    names = ("mlp-tiny", "gbm-small", "forest-small", "mlp-regressor-tiny")
    return {name: zoo.train(name, n_train=1500, n_holdout=1200) for name in names}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "artifacts", sessions=SessionCache())


def _run(bytes_: bytes, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(bytes_, providers=["CPUExecutionProvider"])
    return list(sess.run(None, {sess.get_inputs()[0].name: x}))


@pytest.mark.parametrize("name", ["mlp-tiny", "gbm-small", "forest-small", "mlp-regressor-tiny"])
def test_export_matches_sklearn(demos: dict[str, zoo.Demo], name: str) -> None:
    demo = demos[name]
    model_bytes = export_sklearn(demo.estimator, demo.x_train.shape[1])
    assert check_parity(demo.estimator, model_bytes, demo.x_holdout) <= 1e-5


def test_denormals_are_scrubbed(demos: dict[str, zoo.Demo]) -> None:
    import copy

    est = copy.deepcopy(demos["mlp-tiny"].estimator)
    est.coefs_[0][0, 0] = 1e-35
    est.coefs_[0][0, 1] = -1e-33
    assert scrub_denormals(est) == 2 and est.coefs_[0][0, 0] == 0.0
    model = onnx.load_from_string(export_sklearn(est, 16))
    init = model.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(init).copy()
    # Set the bits, not a float: on a thread where onnxruntime enabled denormals-as-zero,
    # converting 1e-40 to float32 already gives 0.
    arr.view(np.uint32).flat[0] = 0x000116C2  # 1e-40 as a float32 denormal
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    assert scrub_onnx_denormals(model) == 1


def test_fewer_trees_equal_sklearn_stages(demos: dict[str, zoo.Demo]) -> None:
    gbm, forest = demos["gbm-small"], demos["forest-small"]
    x = gbm.x_holdout[:300]
    gbm_bytes = export_sklearn(gbm.estimator, 16)
    staged = list(gbm.estimator.staged_predict_proba(x))
    got = _run(transforms.compact_trees(gbm_bytes, 10), x)[1]
    np.testing.assert_allclose(got[:, 1], staged[9][:, 1], atol=1e-5)
    forest_bytes = export_sklearn(forest.estimator, 16)
    first = np.mean([t.predict_proba(x)[:, 1] for t in forest.estimator.estimators_[:5]], axis=0)
    got = _run(transforms.compact_trees(forest_bytes, 5), x)[1]
    np.testing.assert_allclose(got[:, 1], first, atol=1e-5)
    assert transforms.TreeEnsemble.of(forest_bytes).additive is False
    assert len(transforms.compact_trees(gbm_bytes, 10)) < len(gbm_bytes) / 3


@pytest.mark.parametrize("step", ["dynamic", "static", "fp16", "prune"])
def test_weight_transforms_keep_meaning(demos: dict[str, zoo.Demo], step: str) -> None:
    demo = demos["mlp-tiny"]
    base = export_sklearn(demo.estimator, 16)
    x = demo.x_holdout
    make = {
        "dynamic": transforms.quantize_dynamic_int8,
        "static": lambda b: transforms.quantize_static_qdq(b, x[:600]),
        "fp16": transforms.convert_float16,
        "prune": lambda b: transforms.prune_magnitude(b, 0.2),
    }[step]
    new = make(base)
    new_p, base_p = _run(new, x)[1][:, 1], _run(base, x)[1][:, 1]
    assert np.mean((new_p >= 0.5) == (base_p >= 0.5)) > 0.95
    assert np.abs(new_p - base_p).mean() < 0.05
    with pytest.raises(transforms.NotApplicable):
        make(export_sklearn(demos["gbm-small"].estimator, 16))


def test_parse_steps() -> None:
    assert parse_steps("compress,dynamic") == ("dynamic", "compress")
    assert parse_steps(list(STEPS)) == STEPS
    with pytest.raises(ValueError, match="choose from trees, prune"):
        parse_steps("dynamic,int4")


def test_optimize_mlp_registers_measured_child(
    registry: ModelRegistry, demos: dict[str, zoo.Demo]
) -> None:
    demo = demos["mlp-tiny"]
    parent = zoo.register_demo(registry, demo, "mlp")
    report = optimize(registry, "mlp", source=demo.source(), objective="size", **FAST)
    assert [s.step for s in report.steps] == ["fp32", *STEPS]
    assert report.step("trees").status == "skipped"
    for name in ("prune", "dynamic", "static", "fp16"):
        step = report.step(name)
        assert step.size_bytes and step.p50_us and step.p99_us and step.batch64_per_s
        assert set(step.quality) == {"auc", "f1", "accuracy"}
    assert report.within_budget and report.registered == "mlp@2"
    child = registry.manifest("mlp", "2")
    assert child.parent_version == parent.version and child.compression == "zstd"
    assert child.holdout_sha256 == parent.holdout_sha256
    assert child.optimization["steps"][-1] == "compress"
    assert child.size_bytes == report.final.size_bytes
    loaded = registry.load("mlp", "2", expected_inputs=demo.inputs)
    agree = (loaded.predict(demo.x_holdout) >= 0.5) == (demo.estimator.predict(demo.x_holdout))
    assert agree.mean() > 0.95
    data = json.loads(report.to_json())
    assert {"size_ratio", "quality_delta", "steps"} <= set(data)
    assert {"size_bytes", "p50_us", "p99_us", "batch64_per_s", "quality"} <= set(data["steps"][0])
    assert "| fp32 | baseline |" in report.to_markdown()


def test_budget_refuses_and_names_the_step(
    registry: ModelRegistry, demos: dict[str, zoo.Demo]
) -> None:
    zoo.register_demo(registry, demos["mlp-tiny"], "mlp")
    report = optimize(registry, "mlp", steps=["prune"], sparsity=0.97, budget_auc=0.001, **FAST)
    assert not report.within_budget and report.registered is None
    assert "prune" in report.budget_message()
    assert registry.versions("mlp") == ["1"]


def test_optimize_trees_and_regressor(registry: ModelRegistry, demos: dict[str, zoo.Demo]) -> None:
    zoo.register_demo(registry, demos["forest-small"], "forest")
    report = optimize(registry, "forest", steps=["trees", "dynamic", "compress"], **FAST)
    assert report.step("dynamic").status == "skipped"
    assert report.step("trees").status in ("kept", "rejected")
    assert report.size_ratio > 1 and report.within_budget
    zoo.register_demo(registry, demos["mlp-regressor-tiny"], "reg")
    report = optimize(registry, "reg", steps=["dynamic", "graph"], register=False, **FAST)
    assert report.primary == "rmse" and "rmse" in report.baseline.quality
    assert report.registered is None


def test_cli_models_and_optimize(
    registry: ModelRegistry, demos: dict[str, zoo.Demo], tmp_path: Path
) -> None:
    zoo.register_demo(registry, demos["mlp-tiny"], "mlp")
    root = ["--root", str(registry.root)]
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "list", *root, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["models"][0]["promoted"] is True
    result = runner.invoke(cli, ["models", "verify", *root])
    assert result.exit_code == 0 and result.output.startswith("ok   mlp@1")
    result = runner.invoke(
        cli,
        ["optimize", "mlp", *root, "--steps", "dynamic,compress", "--json", "--timing-s", "0.01",
         "--objective", "size"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["registered"] == "mlp@2"
    result = runner.invoke(cli, ["models", "promote", "mlp", "2", *root, "--no-announce"])
    assert result.exit_code == 0 and "promoted mlp@2 (was 1)" in result.output
    assert "announced" not in result.output
    result = runner.invoke(cli, ["models", "show", "mlp", *root])
    assert json.loads(result.output)["version"] == "2"
    result = runner.invoke(
        cli, ["optimize", "mlp", "-v", "1", *root, "--steps", "prune", "--sparsity", "0.97",
              "--budget-auc", "0.001", "--timing-s", "0.01"],
    )  # fmt: skip
    assert isinstance(result.exception, QualityBudgetExceeded)
    assert "fp32" in result.output  # the table is printed before the error
    result = runner.invoke(cli, ["optimize", "mlp", *root, "--steps", "int4"])
    assert result.exit_code == 2
    (registry.version_dir("mlp", "1") / "model.onnx").write_bytes(b"tampered")
    result = runner.invoke(cli, ["models", "verify", *root])
    assert "FAIL mlp@1" in result.output and result.exit_code != 0
    result = runner.invoke(cli, ["models", "verify", "mlp", "-v", "1", *root])
    assert "does not match its manifest sha256" in result.output
    with pytest.raises(TamperedArtifact):
        registry.load("mlp", "1")
