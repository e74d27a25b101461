"""The inference engine: pools of model backends per task, health-checked, circuit-broken,
selected by a strategy, failed over within a deadline, optionally aggregated (Faust-free).

    engine = InferenceEngine(seed=0)
    engine.add_task("failure", onnx_replicas(registry, "failure-gbm", 2),
                    TaskConfig(strategy=LeastLoaded(), timeout_s=0.5, deadline_s=2.0),
                    golden=golden_set(registry, "failure-gbm"))
    await engine.start()
    result = await engine.infer("failure", {"input": x})   # never raises; value None + reason

Modules: `tensors` (Open Inference Protocol v2 tensor codec), `backends` (the `Backend`
protocol; `LocalBackend`: in-process, one thread per replica), `remote` (`RemoteBackend`: OIP v2
REST over aiohttp), `batching` (`BatchingBackend`: concurrent calls coalesced), `health`
(circuit breaker, latency EWMA/p99, golden-set probe),
`strategies` (selection), `aggregate` (mean / max / vote), `engine` (`InferenceEngine`;
`results`: `TaskConfig`, `InferenceResult`, `BackendCall`),
`loading` (pools and golden sets from the registry), `adapter` (`EngineFailureModel`: the
engine behind the Scorer's failure-model interface), `shadow` (`ShadowScorer`: a challenger
scores off the critical path; `comparison`: agreement / quality / latency), `providers`
(ONNX Runtime execution-provider lists with CPU fallback), `litert` (LiteRT backend and an
MLP -> .tflite exporter). See docs/inference.md.
"""

from __future__ import annotations

from edgeml.models.inference.adapter import EngineFailureModel, EngineLoop
from edgeml.models.inference.aggregate import AGGREGATIONS, Aggregation
from edgeml.models.inference.backends import (
    SCORE,
    Backend,
    LocalBackend,
    Signature,
    Tensors,
    TensorSpec,
    onnx_backend,
)
from edgeml.models.inference.batching import BatchingBackend
from edgeml.models.inference.engine import (
    BackendCall,
    InferenceEngine,
    InferenceResult,
    TaskConfig,
    TaskPool,
)
from edgeml.models.inference.errors import (
    BackendError,
    BackendOverloaded,
    InferenceError,
    TensorError,
)
from edgeml.models.inference.health import (
    BackendHealth,
    BreakerConfig,
    CircuitBreaker,
    GoldenSet,
    LatencyWindow,
)
from edgeml.models.inference.litert import LiteRTModel, UnsupportedGraph, litert_backend
from edgeml.models.inference.loading import golden_set, onnx_replicas
from edgeml.models.inference.providers import ProviderChoice, provider_session
from edgeml.models.inference.remote import RemoteBackend
from edgeml.models.inference.shadow import ShadowScorer, ShadowStats
from edgeml.models.inference.strategies import (
    STRATEGIES,
    BestQuality,
    LeastLoaded,
    LowestLatency,
    Member,
    Route,
    Strategy,
    Weighted,
    strategy_named,
)

__all__ = [
    "AGGREGATIONS",
    "SCORE",
    "STRATEGIES",
    "Aggregation",
    "Backend",
    "BackendCall",
    "BackendError",
    "BackendHealth",
    "BackendOverloaded",
    "BatchingBackend",
    "BestQuality",
    "BreakerConfig",
    "CircuitBreaker",
    "EngineFailureModel",
    "EngineLoop",
    "GoldenSet",
    "InferenceEngine",
    "InferenceError",
    "InferenceResult",
    "LatencyWindow",
    "LeastLoaded",
    "LiteRTModel",
    "LocalBackend",
    "LowestLatency",
    "Member",
    "ProviderChoice",
    "RemoteBackend",
    "Route",
    "ShadowScorer",
    "ShadowStats",
    "Signature",
    "Strategy",
    "TaskConfig",
    "TaskPool",
    "TensorError",
    "TensorSpec",
    "Tensors",
    "UnsupportedGraph",
    "Weighted",
    "golden_set",
    "litert_backend",
    "onnx_backend",
    "onnx_replicas",
    "provider_session",
    "strategy_named",
]
