"""sklearn -> ONNX export with denormal scrubbing and a parity check against the source model.

Trainers call `export_sklearn(estimator, n_features)` and then `check_parity(...)` (or use
`export_checked`), so the bytes that reach the registry are known to agree with sklearn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeml.topics.errors import EdgeMLError

__all__ = [
    "DENORMAL_THRESHOLD",
    "ExportMismatch",
    "check_parity",
    "export_checked",
    "export_sklearn",
    "scrub_denormals",
    "scrub_onnx_denormals",
    "sklearn_scores",
]

DENORMAL_THRESHOLD = 1e-30
INPUT_NAME = "input"


_EXPONENT_MASK = {np.dtype(np.float32): 0x7F800000, np.dtype(np.float64): 0x7FF0000000000000}
_UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _tiny(arr: np.ndarray) -> np.ndarray:
    """Mask of nonzero |w| < 1e-30. Denormals are found by their bits (zero exponent, nonzero
    mantissa): once an onnxruntime session with denormals-as-zero has run on this thread, float
    comparisons see a denormal as 0 and `arr != 0` would miss it."""
    mask = (np.abs(arr) < DENORMAL_THRESHOLD) & (arr != 0)
    exponent = _EXPONENT_MASK.get(arr.dtype)
    if exponent is not None:
        bits = arr.view(_UINT[arr.dtype])
        mask |= ((bits & exponent) == 0) & ((bits & ~np.array(exponent, bits.dtype)) != 0)
    return mask


class ExportMismatch(EdgeMLError):
    """An exported model disagrees with its source beyond tolerance."""


def scrub_denormals(estimator: Any) -> int:
    """Zero every |w| < 1e-30 in an sklearn model's weight arrays in place; return the count.

    Denormal floats make CPU kernels fall off a performance cliff (microcode assists); a tiny
    weight contributes nothing, so it is set to exactly zero before export and benchmarks.
    """
    count = 0
    arrays: list[np.ndarray] = []
    for name in ("coefs_", "intercepts_"):
        arrays.extend(getattr(estimator, name, []) or [])
    for name in ("coef_", "intercept_"):
        value = getattr(estimator, name, None)
        if isinstance(value, np.ndarray):
            arrays.append(value)
    for arr in arrays:
        if arr.dtype.kind == "f":
            mask = _tiny(arr)
            count += int(mask.sum())
            arr[mask] = 0.0
    return count


def scrub_onnx_denormals(model: Any) -> int:
    """Zero tiny float initializers of an `onnx.ModelProto` in place; return the count."""
    from onnx import numpy_helper

    count = 0
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind != "f":
            continue
        mask = _tiny(arr)
        if mask.any():
            count += int(mask.sum())
            fixed = np.where(mask, 0, arr).astype(arr.dtype)
            init.CopyFrom(numpy_helper.from_array(fixed, init.name))
    return count


def export_sklearn(estimator: Any, n_features: int, *, opset: int | None = None) -> bytes:
    """Serialize a fitted sklearn estimator to ONNX bytes: one float input `input` (n, k),
    classifiers emit `label` and a plain `probabilities` tensor (no ZipMap)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    scrub_denormals(estimator)
    options: dict[Any, Any] = {}
    if hasattr(estimator, "predict_proba"):
        options = {id(estimator): {"zipmap": False}}
    model = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options=options,
        target_opset=opset,
    )
    scrub_onnx_denormals(model)
    return bytes(model.SerializeToString())


def sklearn_scores(estimator: Any, features: np.ndarray) -> np.ndarray:
    """The score the registry's `LoadedModel.predict` returns, computed by sklearn."""
    x = np.asarray(features, dtype=np.float32)
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(x)[:, -1], dtype=np.float64)
    return np.asarray(estimator.predict(x), dtype=np.float64).reshape(len(x))


def onnx_outputs(model_bytes: bytes, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores, labels) of an exported model; labels are None for regressors."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out = sess.run(None, {sess.get_inputs()[0].name: np.asarray(features, dtype=np.float32)})
    if "probabilities" in names:
        probs = np.asarray(out[names.index("probabilities")])
        labels = np.asarray(out[names.index("label")]) if "label" in names else None
        return probs[:, -1].astype(np.float64), labels
    return np.asarray(out[0]).reshape(len(features)).astype(np.float64), None


def check_parity(
    estimator: Any, model_bytes: bytes, features: np.ndarray, *, atol: float = 1e-5
) -> float:
    """Raise `ExportMismatch` unless ONNX scores match sklearn within `atol` (relative for
    regressors) and labels agree 100%; return the max absolute score difference."""
    x = np.asarray(features, dtype=np.float32)
    expected = sklearn_scores(estimator, x)
    got, labels = onnx_outputs(model_bytes, x)
    diff = np.abs(got - expected)
    scale = 1.0 if hasattr(estimator, "predict_proba") else max(1.0, float(np.abs(expected).max()))
    worst = float(diff.max()) if len(diff) else 0.0
    if worst > atol * scale:
        raise ExportMismatch(f"ONNX scores differ from sklearn by up to {worst:.3g} (> {atol})")
    if labels is not None:
        want = np.asarray(estimator.predict(x))
        agree = float(np.mean(labels.astype(want.dtype) == want))
        if agree < 1.0:
            raise ExportMismatch(f"ONNX labels agree with sklearn on {agree:.2%} of rows, not 100%")
    return worst


def export_checked(estimator: Any, features: np.ndarray, *, atol: float = 1e-5) -> bytes:
    """`export_sklearn` followed by `check_parity` on `features`."""
    model_bytes = export_sklearn(estimator, np.asarray(features).shape[1])
    check_parity(estimator, model_bytes, features, atol=atol)
    return model_bytes
