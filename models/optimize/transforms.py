"""ONNX -> ONNX transforms the optimizer measures: each takes model bytes and returns new bytes.

Pure functions (no registry, no timing): `quantize_dynamic_int8`, `quantize_static_qdq`,
`convert_float16`, `prune_magnitude`, `compact_trees`, `optimize_graph`, `compress_zstd`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeml.models.optimize.export import scrub_onnx_denormals
from edgeml.topics.errors import EdgeMLError

__all__ = [
    "ZSTD_LEVEL",
    "NotApplicable",
    "TreeEnsemble",
    "compact_trees",
    "compress_zstd",
    "convert_float16",
    "model_family",
    "optimize_graph",
    "prune_magnitude",
    "quantize_dynamic_int8",
    "quantize_static_qdq",
    "scrub",
]

ZSTD_LEVEL = 19
_TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
_WEIGHT_OPS = ("MatMul", "Gemm")
Family = Literal["trees", "mlp", "other"]


class NotApplicable(EdgeMLError):
    """A step does not apply to this kind of model (e.g. pruning a tree ensemble)."""


def _load(model_bytes: bytes) -> Any:
    import onnx

    return onnx.load_from_string(model_bytes)


def _dump(model: Any) -> bytes:
    return bytes(model.SerializeToString())


def scrub(model_bytes: bytes) -> bytes:
    """Zero denormal float initializers (|w| < 1e-30); returns the bytes unchanged if none."""
    model = _load(model_bytes)
    return _dump(model) if scrub_onnx_denormals(model) else model_bytes


def _weight_initializers(model: Any) -> list[Any]:
    inits = {init.name: init for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in _WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            init = inits[node.input[1]]
            if len(init.dims) == 2 and init.data_type == 1 and init not in found:
                found.append(init)
    return found


def model_family(model_bytes: bytes) -> Family:
    """ "trees" (an ai.onnx.ml tree ensemble), "mlp" (MatMul/Gemm weights) or "other"."""
    model = _load(model_bytes)
    if any(node.op_type in _TREE_OPS for node in model.graph.node):
        return "trees"
    return "mlp" if _weight_initializers(model) else "other"


def weight_count(model_bytes: bytes) -> int:
    """Number of float parameters in MatMul/Gemm weight initializers."""
    return sum(int(np.prod(init.dims)) for init in _weight_initializers(_load(model_bytes)))


# -- quantization ------------------------------------------------------------------------------


def _require_weights(model_bytes: bytes, step: str) -> None:
    if model_family(model_bytes) != "mlp":
        raise NotApplicable(f"{step}: no MatMul/Gemm weights to quantize")


def quantize_dynamic_int8(model_bytes: bytes) -> bytes:
    """int8 weights, activations quantized per call (onnxruntime `quantize_dynamic`).

    Weights use 7 bits (`reduce_range`): on x86 CPUs without VNNI (AVX2, AVX-512 without
    VNNI) ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose
    int16 sums saturate with full-range weights (ORT's quantization docs). Measured on an AVX2
    AMD EPYC, a 16-unit MLP over 400 rows: full range, max |row alone - in batch| 0.159 and
    max |int8 - fp32| 0.184; 7 bits, 0.011 and 0.019 (the per-call activation scale's own
    effect). Found by tests/unit/models/test_backends_contract.py failing on such a machine."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _require_weights(model_bytes, "dynamic")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(model_bytes)
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(_WEIGHT_OPS),
            reduce_range=True,
        )
        return dst.read_bytes()


class _Calibration:
    def __init__(self, input_name: str, rows: np.ndarray, batch: int = 64) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: np.ascontiguousarray(rows[i : i + batch], dtype=np.float32)}
            for i in range(0, len(rows), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - only some calibrators call it
        raise NotImplementedError


def quantize_static_qdq(model_bytes: bytes, calibration: np.ndarray) -> bytes:
    """QDQ int8 (uint8 activations, per-channel int8 weights) calibrated on `calibration` rows."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    _require_weights(model_bytes, "static")
    model = _load(model_bytes)
    reader = type("_Reader", (_Calibration, CalibrationDataReader), {})(
        model.graph.input[0].name, calibration
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(model_bytes)
        quantize_static(
            src,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(_WEIGHT_OPS),
            calibrate_method=CalibrationMethod.MinMax,
        )
        return dst.read_bytes()


def _drop_noop_input_casts(model: Any) -> None:
    """skl2onnx starts with Cast(float -> float); the fp16 converter mis-wires it, so drop it."""
    from onnx import helper

    graph = model.graph
    float_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == 1}
    for node in list(graph.node):
        if node.op_type != "Cast" or node.input[0] not in float_inputs:
            continue
        to = [helper.get_attribute_value(a) for a in node.attribute if a.name == "to"]
        if to != [1]:
            continue
        for other in graph.node:
            for i, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[i] = node.input[0]
        graph.node.remove(node)


def convert_float16(model_bytes: bytes) -> bytes:
    """float16 weights and compute (onnxconverter-common), float32 inputs/outputs kept."""
    from onnxconverter_common import float16

    _require_weights(model_bytes, "fp16")
    model = _load(model_bytes)
    _drop_noop_input_casts(model)
    return _dump(float16.convert_float_to_float16(model, keep_io_types=True))


# -- pruning -----------------------------------------------------------------------------------


def prune_magnitude(model_bytes: bytes, sparsity: float) -> bytes:
    """Zero the smallest-|w| `sparsity` fraction of each MatMul/Gemm weight matrix."""
    from onnx import numpy_helper

    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
    model = _load(model_bytes)
    weights = _weight_initializers(model)
    if not weights:
        raise NotApplicable("prune: no MatMul/Gemm weights")
    for init in weights:
        w = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(magnitude_mask(w, sparsity) * w, init.name))
    return _dump(model)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """1 where |w| is above the layer's `sparsity` quantile, else 0 (same dtype as weights)."""
    threshold = np.quantile(np.abs(weights), sparsity)
    return (np.abs(weights) > threshold).astype(weights.dtype)


# -- tree ensembles ----------------------------------------------------------------------------


@dataclass(slots=True)
class TreeEnsemble:
    """The tree-ensemble node of an ONNX model, for compaction. `additive` ensembles (boosting:
    the node has base_values) keep a prefix of trees; averaged ones (forests) any subset,
    reweighted by n_trees / kept."""

    n_trees: int
    additive: bool
    n_nodes: int

    @classmethod
    def of(cls, model_bytes: bytes) -> TreeEnsemble:
        _, attrs = _tree_node(_load(model_bytes))
        return cls(
            n_trees=int(max(attrs["nodes_treeids"])) + 1,
            additive="base_values" in attrs,
            n_nodes=len(attrs["nodes_treeids"]),
        )


def _tree_node(model: Any) -> tuple[Any, dict[str, Any]]:
    from onnx import helper

    for node in model.graph.node:
        if node.op_type in _TREE_OPS:
            return node, {a.name: helper.get_attribute_value(a) for a in node.attribute}
    raise NotApplicable("trees: the model has no TreeEnsembleClassifier/Regressor")


def compact_trees(model_bytes: bytes, keep: int) -> bytes:
    """Keep the first `keep` trees (reweighting averaged forests) and drop default attributes."""
    from onnx import helper

    model = _load(model_bytes)
    node, attrs = _tree_node(model)
    n_trees = int(max(attrs["nodes_treeids"])) + 1
    if not 1 <= keep <= n_trees:
        raise ValueError(f"keep must be in 1..{n_trees}, got {keep}")
    additive = "base_values" in attrs
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    node_keep = [t < keep for t in attrs["nodes_treeids"]]
    leaf_keep = [t < keep for t in attrs[f"{prefix}_treeids"]]
    new: dict[str, Any] = {}
    for name, value in attrs.items():
        if name.startswith("nodes_"):
            value = [v for v, k in zip(value, node_keep, strict=True) if k]
        elif name.startswith(f"{prefix}_"):
            value = [v for v, k in zip(value, leaf_keep, strict=True) if k]
        new[name] = value
    if not additive:
        scale = n_trees / keep
        new[f"{prefix}_weights"] = [w * scale for w in new[f"{prefix}_weights"]]
    if all(h == 1.0 for h in new.get("nodes_hitrates", [])):
        new.pop("nodes_hitrates", None)
    if not any(new.get("nodes_missing_value_tracks_true", [])):
        new.pop("nodes_missing_value_tracks_true", None)
    replacement = helper.make_node(
        node.op_type, list(node.input), list(node.output), name=node.name, domain=node.domain
    )
    replacement.attribute.extend(
        helper.make_attribute(k, v.decode() if isinstance(v, bytes) else v) for k, v in new.items()
    )
    node.CopyFrom(replacement)
    return _dump(model)


# -- graph and shipping ------------------------------------------------------------------------


def optimize_graph(model_bytes: bytes, *, threads: int = 1) -> bytes:
    """ORT's offline graph optimization (constant folding, fusions), saved as a model file.

    Saved at the *extended* level: layout transforms (the "all" level) are tied to the CPU
    that ran them, so they are left to each loading session.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.intra_op_num_threads = threads
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def compress_zstd(model_bytes: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(model_bytes)
