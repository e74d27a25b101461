"""The inference engine: per task a pool of backends, health-checked, selected, failed over.

    engine = InferenceEngine(seed=0)
    engine.add_task("failure", onnx_replicas(registry, "failure-gbm", 2), TaskConfig(),
                    golden=golden_set(registry, "failure-gbm"))
    await engine.start()                      # golden-set probes now, then on an interval
    result = await engine.infer("failure", {"input": x})
    result.value                              # (n,) scores, or None with result.reason
    result.calls                              # which backends were called, how long, what failed

Guarantees (each has a unit test in tests/unit/models/inference/):

- `infer` never raises for anything a backend does and returns within the task's `deadline_s`
  (plus scheduling): each call gets `min(timeout_s, time left)`, a failed or timed-out call
  fails over to the next backend in the strategy's order, and when no backend answers the
  result has `value=None` and a `reason` naming each backend's failure.
- A backend's breaker opens after `breaker.failures` consecutive failures or a failed probe,
  and no call goes to it until its cooldown ends (then one trial call) or a probe passes.
- A backend whose declared inputs do not fit the call's tensors is never called.
- An answer without the task's output, with another row count, or with non-finite values
  counts as a failure (failed over), never as a result.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeml.models.inference.backends import Backend, Tensors
from edgeml.models.inference.errors import InferenceError
from edgeml.models.inference.health import (
    BackendHealth,
    CircuitBreaker,
    GoldenSet,
    ProbeResult,
    describe,
    finite_rows,
    probe,
)
from edgeml.models.inference.results import BackendCall, InferenceResult, TaskConfig
from edgeml.models.inference.stacking import Stacker
from edgeml.models.inference.strategies import Member

__all__ = ["BackendCall", "InferenceEngine", "InferenceResult", "TaskConfig", "TaskPool"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TaskPool:
    """One task's backends, configuration and golden set (`InferenceEngine.add_task`), and,
    with the `stack` aggregation, its `stacker` (learned from `InferenceEngine.learn`)."""

    name: str
    config: TaskConfig
    members: list[Member]
    golden: GoldenSet | None = None
    prober: asyncio.Task[None] | None = None
    stacker: Stacker | None = None

    def new_stacker(self) -> None:
        """A cold stacker over the members (`stack` only), unless one over the same backend
        names exists: learned weights belong to backend names. A hot swap renames in-process
        replicas (`<model ref>#<i>`), so their stacker starts cold again; a remote backend
        keeps its name, and its weight, across `replace`."""
        agg = self.config.aggregation
        if agg is None or agg.method != "stack":
            return
        names = [m.backend.name for m in self.members]
        if self.stacker is not None and list(self.stacker.members) == names:
            return
        self.stacker = agg.new_stacker(names, [m.backend.model_ref for m in self.members])

    def ready(self) -> bool:
        return any(m.health.healthy for m in self.members)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready(),
            "strategy": self.config.strategy.name,
            "aggregation": None
            if self.config.aggregation is None
            else self.config.aggregation.method,
            "backends": {
                m.backend.name: {"model": m.backend.model_ref, **m.health.snapshot()}
                for m in self.members
            },
            **({} if self.stacker is None else {"stack": self.stacker.summary()}),
        }


class InferenceEngine:
    """Tasks -> pools of backends; `infer` selects, calls, fails over, aggregates (module
    docstring). `seed` drives every random choice (p2c, weighted split); `clock` is the
    breaker's (tests pass a fake one). `on_call(task, call)` sees every backend call and
    `on_result(result)` every `infer`'s answer (metrics: calls, failovers, "down")."""

    def __init__(
        self,
        *,
        seed: int | None = 0,
        clock: Callable[[], float] = time.monotonic,
        on_call: Callable[[str, BackendCall], None] | None = None,
        on_result: Callable[[InferenceResult], None] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.on_call = on_call
        self.on_result = on_result
        self.tasks: dict[str, TaskPool] = {}
        self._started = False

    def add_task(
        self,
        task: str,
        backends: Sequence[Backend],
        config: TaskConfig | None = None,
        *,
        golden: GoldenSet | None = None,
    ) -> TaskPool:
        if task in self.tasks:
            raise ValueError(f"task {task!r} is already served")
        if not backends:
            raise ValueError(f"task {task!r} needs at least one backend")
        names = [b.name for b in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backend names of task {task!r} must be unique, got {names}")
        config = config or TaskConfig()
        members = [
            Member(b, BackendHealth(CircuitBreaker.of(config.breaker, self.clock)))
            for b in backends
        ]
        pool = self.tasks[task] = TaskPool(task, config, members, golden)
        pool.new_stacker()
        return pool

    def learn(
        self, task: str, answers: Mapping[str, np.ndarray], labels: Sequence[bool] | np.ndarray
    ) -> int:
        """Teach `task`'s stacker delayed labels: `answers` (backend name -> (n,) scores of
        labelled rows, e.g. an `InferenceResult.members`) and their `labels`. Returns the rows
        learned; 0 when the task does not aggregate by `stack`."""
        pool = self.tasks[task]
        if pool.stacker is None:
            return 0
        return pool.stacker.learn(answers, labels)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> dict[str, list[ProbeResult]]:
        """Probe every backend once (the load-time golden-set check), then keep probing each
        task on its interval. Returns the load-time probe results per task."""
        results = {name: await self.probe_task(name) for name in self.tasks}
        for pool in self.tasks.values():
            if pool.golden is not None and pool.config.probe_interval_s > 0:
                pool.prober = asyncio.create_task(self._probe_forever(pool))
        self._started = True
        return results

    async def close(self) -> None:
        probers = [p.prober for p in self.tasks.values() if p.prober is not None]
        for prober in probers:
            prober.cancel()
        if probers:
            # `wait`, not `await prober`: it never re-raises a prober's own CancelledError,
            # which once escaped `edgeml serve`'s cleanup after a failed bind (under load)
            await asyncio.wait(probers, timeout=5.0)
        for pool in self.tasks.values():
            pool.prober = None
            for m in pool.members:
                try:
                    await m.backend.close()
                except Exception as exc:  # closing is best effort; say what failed
                    log.warning("closing backend %s failed: %s", m.backend.name, describe(exc))

    async def probe_task(self, task: str) -> list[ProbeResult]:
        """Run the golden set against every backend of `task` now (concurrently)."""
        pool = self.tasks[task]
        if pool.golden is None:
            return []
        return list(await asyncio.gather(*(self._probe(pool, m) for m in pool.members)))

    async def _probe(self, pool: TaskPool, m: Member) -> ProbeResult:
        assert pool.golden is not None
        result = await probe(
            m.backend, pool.golden, pool.config.output, pool.config.probe_timeout_s
        )
        h = m.health
        h.probes += 1
        h.probe_s = result.seconds
        was = h.breaker.state
        h.probe_ok = result.ok
        if result.ok:
            h.breaker.reset()
        else:
            h.last_error = result.reason
            h.breaker.trip(result.reason)
        self._log_transition(pool.name, m, was)
        return result

    async def replace(
        self, task: str, backends: Sequence[Backend], *, golden: GoldenSet | None = None
    ) -> list[ProbeResult]:
        """Swap `task`'s backends for `backends` (a new model version), probed first with
        `golden` (else the task's golden set): when none passes, nothing changes and
        `InferenceError` says why. Calls in flight finish on the old backends, which are then
        closed."""
        pool = self.tasks[task]
        if not backends:
            raise ValueError(f"task {task!r} needs at least one backend")
        golden = golden if golden is not None else pool.golden
        fresh = TaskPool(task, pool.config, [
            Member(b, BackendHealth(CircuitBreaker.of(pool.config.breaker, self.clock)))
            for b in backends
        ], golden)  # fmt: skip
        results: list[ProbeResult] = []
        if golden is not None:
            results = list(await asyncio.gather(*(self._probe(fresh, m) for m in fresh.members)))
            if not any(r.ok for r in results):
                for m in fresh.members:
                    await m.backend.close()
                why = "; ".join(
                    f"{m.backend.name}: {r.reason}"
                    for m, r in zip(fresh.members, results, strict=True)
                )
                raise InferenceError(f"task {task!r}: no new backend passed its probe ({why})")
        old, pool.members, pool.golden = pool.members, fresh.members, golden
        pool.new_stacker()
        # calls already running on the old backends get up to one deadline to finish
        until = self.clock() + pool.config.deadline_s
        while any(m.health.in_flight for m in old) and self.clock() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for m in old:
            await m.backend.close()
        return results

    async def _probe_forever(self, pool: TaskPool) -> None:
        while True:
            await asyncio.sleep(pool.config.probe_interval_s)
            await self.probe_task(pool.name)

    # -- calls ----------------------------------------------------------------------------------

    def ready(self, task: str) -> bool:
        pool = self.tasks.get(task)
        return pool is not None and pool.ready()

    def status(self) -> dict[str, Any]:
        return {name: pool.status() for name, pool in self.tasks.items()}

    async def infer(
        self, task: str, inputs: Tensors, *, deadline_s: float | None = None
    ) -> InferenceResult:
        """Answer `task` for `inputs`; never raises for a backend's fault (module docstring)."""
        result = await self._infer(task, inputs, deadline_s)
        if self.on_result is not None and task in self.tasks:
            self.on_result(result)
        return result

    async def _infer(self, task: str, inputs: Tensors, deadline_s: float | None) -> InferenceResult:
        began = time.perf_counter()
        pool = self.tasks.get(task)
        if pool is None:
            known = ", ".join(self.tasks) or "none"
            return InferenceResult(task, None, f"unknown task {task!r} (tasks: {known})")
        rows = _rows(inputs)
        if isinstance(rows, str):
            return InferenceResult(task, None, rows)
        config = pool.config
        deadline = self.clock() + (deadline_s if deadline_s is not None else config.deadline_s)
        accepting: list[Member] = []
        refused: list[str] = []
        for m in pool.members:
            why = m.backend.signature.refuses(inputs)
            if why is None:
                accepting.append(m)
            else:
                refused.append(f"{m.backend.name}: {why}")
        if not accepting:
            reason = f"no backend of task {task!r} accepts these inputs ({'; '.join(refused)})"
            return InferenceResult(task, None, reason, seconds=time.perf_counter() - began)
        available = [m for m in accepting if m.health.healthy]
        if not available:
            down = "; ".join(
                f"{m.backend.name}: {m.health.breaker.reason or m.health.last_error or 'down'}"
                for m in accepting
            )
            reason = f"every backend of task {task!r} is down ({down})"
            return InferenceResult(task, None, reason, seconds=time.perf_counter() - began)
        ordered = config.strategy.order(available, self.rng)
        if config.aggregation is not None:
            result = await self._fan_out(pool, ordered, inputs, rows, deadline)
        else:
            result = await self._first(pool, ordered, inputs, rows, deadline)
        result.seconds = time.perf_counter() - began
        return result

    async def _first(
        self,
        pool: TaskPool,
        ordered: list[Member],
        inputs: Tensors,
        rows: int,
        deadline: float,
    ) -> InferenceResult:
        calls: list[BackendCall] = []
        for m in ordered:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            if not m.health.breaker.allow():
                continue
            call, outputs = await self._call(pool, m, inputs, rows, remaining)
            calls.append(call)
            if outputs is not None:
                return InferenceResult(pool.name, outputs[pool.config.output], None, outputs, calls)
        return InferenceResult(pool.name, None, _failed(pool.name, calls, deadline, self.clock()),
                               calls=calls)  # fmt: skip

    async def _fan_out(
        self,
        pool: TaskPool,
        ordered: list[Member],
        inputs: Tensors,
        rows: int,
        deadline: float,
    ) -> InferenceResult:
        agg = pool.config.aggregation
        assert agg is not None
        want = pool.config.fanout or len(ordered)
        calls: list[BackendCall] = []
        answers: dict[str, np.ndarray] = {}
        refs: dict[str, str] = {}
        queue = list(ordered)
        while queue and len(answers) < agg.min_answers:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            need = want if not calls else agg.min_answers - len(answers)
            batch: list[Member] = []
            while queue and len(batch) < need:
                m = queue.pop(0)
                if m.health.breaker.allow():
                    batch.append(m)
            if not batch:
                break
            done = await asyncio.gather(
                *(self._call(pool, m, inputs, rows, remaining) for m in batch)
            )
            for m, (call, outputs) in zip(batch, done, strict=True):
                calls.append(call)
                if outputs is not None:
                    answers[m.backend.name] = outputs[pool.config.output]
                    refs[m.backend.name] = m.backend.model_ref
        if len(answers) < agg.min_answers:
            reason = _failed(pool.name, calls, deadline, self.clock())
            if answers:
                reason = f"{len(answers)} of the {agg.min_answers} answers needed; {reason}"
            return InferenceResult(pool.name, None, reason, calls=calls)
        value = agg.combine(answers, refs, stacker=pool.stacker)
        result = InferenceResult(pool.name, value, None, {pool.config.output: value}, calls)
        if pool.stacker is not None:  # what a delayed label will teach the stacker
            result.members = answers
        return result

    async def _call(
        self, pool: TaskPool, m: Member, inputs: Tensors, rows: int, remaining: float
    ) -> tuple[BackendCall, dict[str, np.ndarray] | None]:
        timeout = min(pool.config.timeout_s, remaining)
        h = m.health
        was = h.breaker.state
        h.in_flight += 1
        start = time.perf_counter()
        error: str | None = None
        timed_out = False
        outputs: dict[str, np.ndarray] | None = None
        try:
            got = await asyncio.wait_for(m.backend.infer(inputs), timeout)
        except TimeoutError:
            error = f"timed out after {timeout:.3g} s"
            timed_out = True
            h.failure(error, timeout=True)
        except Exception as exc:  # whatever a backend raises is its failure, not the caller's
            error = describe(exc)
            h.failure(error)
        else:
            raw = got.get(pool.config.output) if isinstance(got, Mapping) else None
            value = None if raw is None else np.asarray(raw)
            if value is None:
                error = f"answer has no output {pool.config.output!r}"
            else:
                error = finite_rows(value, rows)
            if error is None and value is not None:
                outputs = {**got, pool.config.output: value}
                h.success(time.perf_counter() - start)
            else:
                h.failure(error or "no usable answer")
        finally:
            h.in_flight -= 1
        call = BackendCall(m.backend.name, m.backend.model_ref, time.perf_counter() - start,
                           error is None, error, timed_out)  # fmt: skip
        self._log_transition(pool.name, m, was)
        if self.on_call is not None:
            self.on_call(pool.name, call)
        return call, outputs

    @staticmethod
    def _log_transition(task: str, m: Member, was: str) -> None:
        now = m.health.breaker.state
        if now != was and now != "half_open":
            detail = f" ({m.health.breaker.reason})" if now == "open" else ""
            log.warning("task %s backend %s: breaker %s -> %s%s", task, m.backend.name, was, now,
                        detail)  # fmt: skip


def _rows(inputs: Tensors) -> int | str:
    """The row count the inputs share, or why they cannot be a call."""
    if not isinstance(inputs, Mapping) or not inputs:
        return "no input tensors"
    counts = set()
    for name, arr in inputs.items():
        if not isinstance(arr, np.ndarray) or arr.ndim == 0:
            return f"input {name!r} must be an array with a row dimension"
        counts.add(len(arr))
    if len(counts) != 1:
        return f"input tensors disagree on the row count ({sorted(counts)})"
    return counts.pop()


def _failed(task: str, calls: list[BackendCall], deadline: float, now: float) -> str:
    tried = "; ".join(f"{c.backend}: {c.error}" for c in calls if not c.ok)
    if not calls:
        return f"no backend of task {task!r} could take the call (breakers open)"
    late = " (deadline reached)" if now >= deadline else ""
    return f"every backend of task {task!r} failed{late}: {tried}"
