"""`EngineFailureModel`: the engine behind the interface the Scorer already calls.

`models.scoring.Scorer` needs of its failure model exactly: `ref` (a str, read for timing and
for `model_ids`), `predict((n, k) float32) -> (n,)` (synchronous: `ReadingPipeline.process`
calls `score_many` on the worker's event loop), and `manifest.inputs` (read once in the
constructor to order the feature columns). This adapter offers those three, so

    failure_model = EngineFailureModel.from_registry(registry, replicas=2)
    scorer = Scorer(config, failure_model=failure_model, on_model_call=...)

serves the Scorer through the engine without a change to the Scorer.

Why its own loop thread: `predict` is synchronous and is called *on* the worker's loop, so it
cannot await the engine there; the engine runs on an `EngineLoop` (a daemon thread with its own
event loop) and `predict` waits for it at most `deadline_s + margin_s`. A hung replica therefore
costs a batch at most the deadline (the engine fails over to another one meanwhile); today a
hung `session.run` holds the worker forever.

When no backend answers, `predict` returns NaN for every row (`on_down="nan"`) and keeps the
result, its reason included, in `last`; `on_down="raise"` raises `InferenceError` instead.
The Scorer turns NaN into 0.0 (`np.nan_to_num`), so the pipeline asks the adapter after each
batch (`take_answer`): which backends were called and how long each took (the prediction's
`models["failure_backends"]`), and, when nobody answered, the reason, which the pipeline
publishes as `failure_prob: null` + `failure_reason` (`models.pipeline`).

Delayed labels for the `stack` aggregation: the Scorer hands the rows its label buffer labels
(`label_sink`, the same rows and labels the online failure model learns) to `learn_labels`,
which queues them (at most `max_label_rows`, oldest dropped). The next `predict` appends up to
`label_rows_per_call` of them to its batch, so every backend scores them in the call it makes
anyway, and the stacker learns from those member scores (`InferenceEngine.learn`); the
caller gets only its own rows back. No extra call, nothing recorded per prediction; a backend
re-scores a labelled row with the version it serves now (the stacker weighs today's members).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

from edgeml.models.inference.backends import Backend
from edgeml.models.inference.engine import InferenceEngine, InferenceResult, TaskConfig
from edgeml.models.inference.errors import InferenceError
from edgeml.models.inference.health import GoldenSet
from edgeml.models.inference.loading import golden_set, onnx_replicas
from edgeml.models.inference.pool import PoolSpec, build_backends
from edgeml.models.inference.stacking import Stacker
from edgeml.models.manifest import (
    ModelAnnouncement,
    ModelManifest,
    SchemaMismatch,
)
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry

__all__ = ["EngineFailureModel", "EngineLoop"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _golden(registry: ModelRegistry, model_id: str) -> GoldenSet | None:
    """The golden set, or None (no probes: breakers then go by call failures alone) when the
    reference model itself does not load: a pool of remote backends still serves."""
    try:
        return golden_set(registry, model_id)
    except Exception as exc:
        log.error("no golden set for %s (%s): backends are not probed", model_id, exc)
        return None


class EngineLoop:
    """An asyncio loop on a daemon thread, for synchronous callers of async code."""

    def __init__(self, name: str = "edgeml-inference") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop thread and wait for it (at most `timeout` seconds)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("EngineLoop.run called from its own thread: it would deadlock")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        if not self._thread.is_alive():
            self.loop.close()


class EngineFailureModel:
    """A failure-model handle for the Scorer backed by an `InferenceEngine` task (module
    docstring). `manifest` is the served version's (its `inputs` order the columns)."""

    def __init__(
        self,
        engine: InferenceEngine,
        task: str,
        manifest: ModelManifest,
        runner: EngineLoop,
        *,
        input_name: str | None = None,
        margin_s: float = 0.5,
        on_down: Literal["nan", "raise"] = "nan",
        max_label_rows: int = 4096,
        label_rows_per_call: int = 256,
    ) -> None:
        if on_down not in ("nan", "raise"):
            raise ValueError(f"on_down must be 'nan' or 'raise', got {on_down!r}")
        pool = engine.tasks[task]
        self.engine = engine
        self.task = task
        self.manifest = manifest
        self.runner = runner
        self.input_name = input_name or pool.members[0].backend.signature.inputs[0].name
        self.margin_s = margin_s
        self.on_down = on_down
        self.last: InferenceResult | None = None
        self.down_calls = 0
        self.spec: PoolSpec | None = None
        self._untaken: InferenceResult | None = None
        self._ref = manifest.ref
        self._wait_s = pool.config.deadline_s + margin_s
        # delayed labels waiting for the next call (`stack` only): (row, label)
        self._labels: deque[tuple[np.ndarray, bool]] = deque(maxlen=max_label_rows)
        self._labels_lock = threading.Lock()
        self.label_rows_per_call = label_rows_per_call
        self.labels_dropped = 0

    @property
    def ref(self) -> str:
        """The model ref that answered the last call (the manifest's before any call)."""
        return self._ref

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        n = len(x)
        labelled = self._take_labels(x.shape[1]) if self._labels else []
        if labelled:
            x = np.concatenate([x, np.stack([r for r, _ in labelled])])
        try:
            result = self.runner.run(
                self.engine.infer(self.task, {self.input_name: x}), self._wait_s
            )
        except concurrent.futures.TimeoutError:
            reason = f"the inference engine did not answer within {self._wait_s:.3g} s"
            result = InferenceResult(self.task, None, reason)
        if labelled:
            self._learn(result, n, labelled)
        self.last = self._untaken = result
        if result.value is not None:
            self._ref = result.model_ref or self._ref
            return np.asarray(result.value, dtype=np.float64)
        self.down_calls += 1
        log.warning("task %s: no failure score for %d rows: %s", self.task, n, result.reason)
        if self.on_down == "raise":
            raise InferenceError(f"task {self.task}: {result.reason}")
        return np.full(n, np.nan)

    # -- delayed labels (the `stack` aggregation) ------------------------------------------------

    def label_sink(self) -> Callable[[np.ndarray, Sequence[bool]], None] | None:
        """Where the Scorer sends labelled rows (`learn_labels`); None unless the task
        aggregates by `stack` (then the Scorer sends nothing)."""
        return self.learn_labels if self.engine.tasks[self.task].stacker is not None else None

    def learn_labels(self, rows: np.ndarray, labels: Sequence[bool]) -> None:
        """Queue labelled rows ((n, k), in `predict`'s column order) for the stacker; they are
        scored and learned with the next `predict` (module docstring)."""
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or len(x) != len(labels):
            raise ValueError(f"{x.shape} rows for {len(labels)} labels")
        with self._labels_lock:
            full = self._labels.maxlen or 0
            self.labels_dropped += max(0, len(self._labels) + len(x) - full)
            self._labels.extend(zip(x, (bool(v) for v in labels), strict=True))

    def flush_labels(self) -> int:
        """Score and learn every queued label now (tests, shutdown); returns rows learned."""
        learned = 0
        while self._labels:
            labelled = self._take_labels(len(self._labels[0][0]))
            if not labelled:
                continue
            x = np.stack([r for r, _ in labelled])
            try:
                result = self.runner.run(
                    self.engine.infer(self.task, {self.input_name: x}), self._wait_s
                )
            except concurrent.futures.TimeoutError:
                result = InferenceResult(self.task, None, "the inference engine did not answer")
            if result.value is None:
                self._learn(result, 0, labelled)  # back in the queue
                break
            learned += self._learn(result, 0, labelled)
        return learned

    @property
    def stacker(self) -> Stacker | None:
        """The task's stacker (`stack` aggregation), else None."""
        return self.engine.tasks[self.task].stacker

    def _take_labels(self, width: int) -> list[tuple[np.ndarray, bool]]:
        with self._labels_lock:
            out: list[tuple[np.ndarray, bool]] = []
            while self._labels and len(out) < self.label_rows_per_call:
                row, label = self._labels.popleft()
                if len(row) == width:  # a row of another layout (a schema change) is dropped
                    out.append((row, label))
            return out

    def _learn(
        self, result: InferenceResult, n: int, labelled: list[tuple[np.ndarray, bool]]
    ) -> int:
        """Teach the stacker the member scores of the labelled rows (those after the first
        `n`) and cut them from `result`; when nobody answered, the rows wait for the next call.
        Returns the rows learned."""
        if result.value is None or not result.members:
            with self._labels_lock:
                self._labels.extendleft(reversed(labelled))
            return 0
        answers = {name: np.asarray(a)[n:] for name, a in result.members.items()}
        result.value = result.value[:n]
        result.outputs = {k: v[:n] for k, v in result.outputs.items()}
        result.members = {k: np.asarray(v)[:n] for k, v in result.members.items()}
        try:
            return self.engine.learn(self.task, answers, [label for _, label in labelled])
        except Exception as exc:  # learning is best effort: never the caller's failure
            log.warning("task %s: the stacker did not learn %d labels: %s", self.task,
                        len(labelled), exc)  # fmt: skip
            return 0

    def take_answer(self) -> tuple[str, str | None] | None:
        """What the last `predict` since the previous `take_answer` did, once: the record of
        its backend calls ("name ok 0.21 ms; name timeout 500 ms") and the reason when no
        backend answered (else None); None when `predict` was not called since."""
        result, self._untaken = self._untaken, None
        if result is None:
            return None
        record = "; ".join(
            f"{c.backend} {c.outcome} {c.seconds * 1e3:.3g} ms" for c in result.calls
        )
        return record or "no backend called", result.reason

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        model_id: str = FAILURE_MODEL_ID,
        *,
        replicas: int = 2,
        config: TaskConfig | None = None,
        extra: Sequence[Backend] = (),
        task: str = "failure",
        seed: int | None = 0,
        on_down: Literal["nan", "raise"] = "nan",
        spec: PoolSpec | None = None,
    ) -> EngineFailureModel:
        """`replicas` in-process replicas of the promoted `model_id` (plus `extra` backends,
        e.g. `RemoteBackend`s), probed with its golden set before this returns. With `spec`
        the pool is the one it describes (`pool.build_backends`: replicas, remote OIP
        servers, drills) and `replicas` is ignored."""
        manifest = registry.manifest(model_id)
        runner = EngineLoop()
        try:
            if spec is not None:
                built = runner.run(build_backends(spec, registry, model_id), timeout=60.0)
            else:
                built = list(onnx_replicas(registry, model_id, replicas))
            backends: list[Backend] = [*built, *extra]
            engine = InferenceEngine(seed=seed)
            engine.add_task(task, backends, config, golden=_golden(registry, model_id))
            runner.run(engine.start())
        except BaseException:
            runner.stop()
            raise
        model = cls(engine, task, manifest, runner, on_down=on_down)
        model.spec = spec
        return model

    def apply(self, announcement: ModelAnnouncement, registry: ModelRegistry) -> bool:
        """Serve the announced version (a hot swap, as `ModelRegistry.apply` does for a
        `ModelHandle`): new in-process replicas of it, probed with its own golden set, replace
        the pool's backends. False when it is another model or already served; raises
        `TamperedArtifact` / `SchemaMismatch` / `InferenceError` and keeps the old version
        when the new one is not the announced bytes, has other inputs or fails its probe."""
        current = self.manifest
        manifest = registry.announced(announcement, current)
        if manifest is None:
            return False
        if manifest.inputs != current.inputs:
            raise SchemaMismatch(f"cannot swap {current.ref} for {manifest.ref}: inputs differ")
        golden = golden_set(registry, manifest.model_id, manifest.version)
        wait = self._wait_s + self.engine.tasks[self.task].config.probe_timeout_s + 5.0
        backends: list[Backend]
        if self.spec is not None:  # the same pool, of the new version (remotes reconnected)
            build = build_backends(self.spec, registry, manifest.model_id,
                                   version=manifest.version)  # fmt: skip
            backends = self.runner.run(build, 60.0)
        else:
            replicas = sum(1 for m in self.engine.tasks[self.task].members)
            backends = list(
                onnx_replicas(registry, manifest.model_id, replicas, version=manifest.version)
            )
        self.runner.run(self.engine.replace(self.task, backends, golden=golden), wait)
        self.manifest = manifest
        self._ref = manifest.ref
        return True

    def close(self) -> None:
        """Stop probing, close the backends, stop the loop thread."""
        try:
            self.runner.run(self.engine.close(), timeout=5.0)
        finally:
            self.runner.stop()
