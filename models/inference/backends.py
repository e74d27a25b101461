"""Backends: one model version on one replica, behind one small async protocol.

A backend answers `await infer({name: array}) -> {name: array}` and says what it is (`name`,
`model_ref`, `metadata`, `signature`). Two kinds ship: `LocalBackend` runs a synchronous
predict (an in-process ONNX session from the registry: `onnx_backend`) on a thread of its own,
and `RemoteBackend` (`models.inference.remote`) speaks the Open Inference Protocol v2 over HTTP.

Why one thread per local replica and a bounded queue: onnxruntime's `run` holds the calling
thread for the whole call (and releases the GIL), so on the event loop a 200 ms call stalls
every other coroutine for 200 ms; in an executor the loop keeps turning. One thread per replica
keeps replicas independent (a hung replica holds only its own thread), and the queue bound
(`max_pending`) makes a replica that stopped answering fail new calls at once with
`BackendOverloaded` instead of piling them up behind the stuck one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeml.models.inference.errors import BackendOverloaded
from edgeml.models.inference.tensors import datatype_of, dtype_of
from edgeml.models.registry import LoadedModel

__all__ = [
    "SCORE",
    "Backend",
    "LocalBackend",
    "Signature",
    "TensorSpec",
    "Tensors",
    "first_input",
    "onnx_backend",
]

Tensors = Mapping[str, np.ndarray]
SCORE = "score"  # the output every registry model's backend answers: (n,) float64 scores


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A tensor a backend accepts or returns: name, OIP datatype, shape (-1 = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def refuses(self, array: np.ndarray) -> str | None:
        """Why `array` does not fit this spec, or None when it does (data-type routing)."""
        if array.ndim != len(self.shape):
            return f"{self.name} takes {len(self.shape)} dims, got shape {list(array.shape)}"
        for want, got in zip(self.shape, array.shape, strict=True):
            if want >= 0 and want != got:
                return f"{self.name} takes shape {list(self.shape)}, got {list(array.shape)}"
        want_dt = dtype_of(self.datatype)
        if not np.can_cast(array.dtype, want_dt, casting="same_kind"):
            return f"{self.name} takes {self.datatype}, got {datatype_of(array)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Signature:
    """The inputs a backend accepts (by name) and the outputs it returns."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()

    def refuses(self, inputs: Tensors) -> str | None:
        """Why these inputs cannot go to this backend, or None when they can."""
        for spec in self.inputs:
            arr = inputs.get(spec.name)
            if arr is None:
                return f"needs input {spec.name!r} (given: {', '.join(inputs) or 'none'})"
            reason = spec.refuses(arr)
            if reason is not None:
                return reason
        return None

    def specificity(self) -> int:
        """How many dimensions are fixed: data-type routing prefers the most specific."""
        return sum(1 for spec in self.inputs for d in spec.shape if d >= 0)


@runtime_checkable
class Backend(Protocol):
    """One model version on one replica. `metadata` may hold `quality` (the registry's holdout
    metric) and anything a strategy or the server reports."""

    @property
    def name(self) -> str: ...

    @property
    def model_ref(self) -> str: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    @property
    def signature(self) -> Signature: ...

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class LocalBackend:
    """A synchronous `predict(inputs) -> outputs` run on this backend's own thread.

    `max_pending` bounds the calls queued or running on that thread; one more fails at once
    with `BackendOverloaded` (module docstring). Usually created by `onnx_backend(model, i)`;
    tests pass any function (a slow or failing one).
    """

    name: str
    model_ref: str
    predict: Callable[[Tensors], dict[str, np.ndarray]]
    signature: Signature
    metadata: Mapping[str, Any] = field(default_factory=dict)
    max_pending: int = 8
    _pending: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _executor: concurrent.futures.ThreadPoolExecutor | None = field(default=None, init=False)

    @property
    def pending(self) -> int:
        """Calls queued or running on the thread (a timed-out call counts until it returns)."""
        return self._pending

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        with self._lock:
            if self._pending >= self.max_pending:
                raise BackendOverloaded(
                    f"{self.name}: {self._pending} calls pending (max_pending={self.max_pending})"
                )
            self._pending += 1
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"infer-{self.name}"
                )
        try:
            future = self._executor.submit(self.predict, inputs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)  # when the thread finishes, even after a timeout
        return await asyncio.wrap_future(future)

    def _done(self, _future: object) -> None:
        with self._lock:
            self._pending -= 1

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)  # a hung call is left to finish


def onnx_backend(
    model: LoadedModel,
    replica: int = 0,
    *,
    quality_metric: str = "roc_auc",
    max_pending: int = 8,
) -> LocalBackend:
    """A registry model (`ModelRegistry.load`) as one in-process replica.

    Takes its graph's input (e.g. `input`, FP32 [-1, k]) and answers `score`: the model's
    (n,) scores as `LoadedModel.predict` reads them (positive-class probability for
    classifiers). `metadata["quality"]` is the manifest's `quality_metric` when recorded.
    Replicas of one model share the registry's one ONNX session (sessions are thread-safe).
    """
    manifest = model.manifest
    session = model.session
    input_name = session.get_inputs()[0].name if session is not None else "input"
    width = len(manifest.inputs)
    signature = Signature(
        inputs=(TensorSpec(input_name, "FP32", (-1, width)),),
        outputs=(TensorSpec(SCORE, "FP64", (-1,)),),
    )

    def predict(inputs: Tensors) -> dict[str, np.ndarray]:
        return {SCORE: model.predict(inputs[input_name])}

    metadata: dict[str, Any] = {
        "kind": "onnx" if session is not None else manifest.kind,
        "task": manifest.task,
        "replica": replica,
        "inputs": list(manifest.inputs),
    }
    if session is not None:  # what the session runs on (`models.inference.providers`)
        metadata["providers"] = list(session.get_providers())
    quality = manifest.metrics.get(quality_metric)
    if quality is not None:
        metadata["quality"] = float(quality)
        metadata["quality_metric"] = quality_metric
    return LocalBackend(
        name=f"{manifest.ref}#{replica}",
        model_ref=manifest.ref,
        predict=predict,
        signature=signature,
        metadata=metadata,
        max_pending=max_pending,
    )


def first_input(backends: Sequence[Backend]) -> TensorSpec:
    """The first input of the first backend: what a single-tensor caller sends."""
    if not backends or not backends[0].signature.inputs:
        raise ValueError("a pool needs at least one backend with a declared input")
    return backends[0].signature.inputs[0]
