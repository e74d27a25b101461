"""Model versions for the edge update tests: a re-numbered copy of the shipped failure model (a
good update) and a constant-probability ONNX model (passes its own golden set, drifts on live
data), signed with a throw-away key. Shared by the unit and the integration tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgeml.edge.bundle import pack_version
from edgeml.edge.signing import sign_version, write_golden
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry
from edgeml.models.shipped import SHIPPED_ROOT

BASE = "2"  # the shipped, promoted failure-gbm version


def seed(root: Path) -> Path:
    """A registry root with the shipped models (failure-gbm@2 promoted)."""
    shutil.copytree(SHIPPED_ROOT, root)
    return root


def copy_version(root: Path, version: str, base: str = BASE) -> Path:
    """`failure-gbm@version`: the bytes of `base` under another version (the same answers)."""
    source, target = root / FAILURE_MODEL_ID / base, root / FAILURE_MODEL_ID / version
    shutil.copytree(source, target)
    for name in ("manifest.json.sig", "golden.npz"):
        (target / name).unlink(missing_ok=True)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    manifest["parent_version"] = base
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target


def constant_version(root: Path, version: str, probability: float, tmp: Path) -> Path:
    """`failure-gbm@version`: an ONNX classifier answering `probability` for every row."""
    import onnx
    from onnx import TensorProto, helper

    registry = ModelRegistry(root)
    base = registry.manifest(FAILURE_MODEL_ID, BASE)
    width = len(base.inputs)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=1),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "answer"], ["probabilities"]),
        ],
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor(
                "answer", TensorProto.FLOAT, [1, 2], [1.0 - probability, probability]
            ),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp / f"constant-{version}.onnx"
    path.write_bytes(model.SerializeToString())
    onnx.checker.check_model(model)
    holdout = registry.holdout_path(FAILURE_MODEL_ID, BASE)
    registry.register(
        FAILURE_MODEL_ID, path, kind="onnx", inputs=base.inputs, training_data="test",
        metrics={}, version=version, holdout=holdout, measure_latency=False,
    )  # fmt: skip
    return root / FAILURE_MODEL_ID / version


def signed(version_dir: Path, private_pem: bytes) -> Path:
    """Write the golden set and sign, as `edgeml edge sign` does."""
    write_golden(version_dir)
    sign_version(version_dir, private_pem)
    return version_dir


def bundle_of(version_dir: Path) -> bytes:
    return pack_version(version_dir)[1]


def golden_rows(version_dir: Path) -> np.ndarray:
    with np.load(version_dir / "golden.npz") as npz:
        return np.asarray(npz["X"])
