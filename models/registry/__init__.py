"""The model registry: versioned, hash-verified artifacts on disk, and process-wide sessions.

Layout (see docs/CONTRACTS.md):

    <root>/<model_id>/<version>/manifest.json
    <root>/<model_id>/<version>/model.onnx | model.onnx.zst | model.pkl   (river)
    <root>/<model_id>/<version>/holdout.npz                                (optional: X, y)
    <root>/<model_id>/PROMOTED                                             (text: a version)

Usually created once per process as `ModelRegistry(root, threads=...)` (the worker's composition
root builds the one it serves from) and asked for `load(model_id)` / `handle(model_id)`; what to
serve at start-up is `promoted_handle(model_id)`, or `load_promoted(root, threads)` for tools and
benches. Every load verifies the artifact's sha256 and its input schema; ONNX sessions are built
once per process and shared (`SessionCache`, keyed by the model's sha256 and thread count).

Modules: `layout` (names and paths on disk, hashes, verified reads, atomic writes), `sessions`
(the process-wide ONNX Runtime sessions), `backends` (`LoadedModel`: ONNX or river, scores per
task), `handle` (`ModelHandle`, the hot-swap reference), `store` (`ModelRegistry`: reading,
loading, hot swap, registering and promoting versions). Import from this package.
"""

from __future__ import annotations

from edgeml.models.registry.backends import LoadedModel, score_output_name, to_scores
from edgeml.models.registry.handle import ModelHandle
from edgeml.models.registry.layout import FAILURE_MODEL_ID, sha256_bytes, sha256_file
from edgeml.models.registry.sessions import (
    ModelMemory,
    SessionCache,
    default_sessions,
    session_options,
)
from edgeml.models.registry.store import ModelRegistry, load_promoted

__all__ = [
    "FAILURE_MODEL_ID",
    "LoadedModel",
    "ModelHandle",
    "ModelMemory",
    "ModelRegistry",
    "SessionCache",
    "default_sessions",
    "load_promoted",
    "score_output_name",
    "session_options",
    "sha256_bytes",
    "sha256_file",
    "to_scores",
]
