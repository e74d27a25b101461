"""Pools from the model registry: in-process replicas of a version, and its golden set.

The golden set is the first `rows` rows of the version's `holdout.npz` (hash-verified by the
registry) with the answers of the verified in-process model: a backend of the *same* version
(another replica, a remote server) must give the same scores within `atol`; float32 ONNX runs
agree to ~1e-7 between sessions, so 1e-5 leaves room for another build of onnxruntime on a
remote server and still catches a wrong or corrupted model (which is off by ~1e-1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeml.models.inference.backends import SCORE, LocalBackend, onnx_backend
from edgeml.models.inference.health import GoldenSet
from edgeml.models.inference.providers import ProviderSpec, with_providers
from edgeml.models.manifest import ManifestError
from edgeml.models.registry import LoadedModel, ModelRegistry

__all__ = ["golden_set", "onnx_replicas"]


def onnx_replicas(
    registry: ModelRegistry,
    model_id: str,
    replicas: int = 1,
    *,
    version: str | None = None,
    max_pending: int = 8,
    quality_metric: str = "roc_auc",
    providers: Sequence[ProviderSpec] | None = None,
) -> list[LocalBackend]:
    """`replicas` in-process backends of one version (None = promoted), each on its own
    thread, sharing the registry's one verified session; with `providers` (an ordered
    execution-provider list, `models.inference.providers`) they share one session on those
    providers instead (a missing one falls back to CPU, logged once and counted)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    model = registry.load(model_id, version)
    if providers:
        model_bytes = registry.model_bytes(model_id, model.manifest.version)
        model = with_providers(model, model_bytes, providers, threads=registry.threads)
    return [
        onnx_backend(model, i, quality_metric=quality_metric, max_pending=max_pending)
        for i in range(replicas)
    ]


def golden_set(
    registry: ModelRegistry,
    model_id: str,
    version: str | None = None,
    *,
    rows: int = 32,
    atol: float = 1e-5,
    reference: LoadedModel | None = None,
) -> GoldenSet | None:
    """The version's golden set (module docstring), or None when it has no holdout."""
    manifest = registry.manifest(model_id, version)
    if not manifest.holdout:
        return None
    try:
        x, _ = registry.holdout(model_id, manifest.version)
    except ManifestError:
        return None
    x = np.ascontiguousarray(x[:rows], dtype=np.float32)
    model = reference if reference is not None else registry.load(model_id, manifest.version)
    name = model.session.get_inputs()[0].name if model.session is not None else "input"
    return GoldenSet({name: x}, {SCORE: model.predict(x)}, atol=atol)
