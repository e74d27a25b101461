"""Load balancing of the inference engine, measured over 10,000 calls (issue #14).

`shares(strategy)`: 10,000 sequential calls through a real `InferenceEngine` over three
scripted backends set up so that each strategy has one right answer (weights 1:2:7; declared
quality; measured latency; declared input shapes; in-flight load), and the share of calls each
backend answered, next to what the configuration says it should get.

`p2c_under_a_slow_replica`: power of two choices when one replica is 10x slower, as a
discrete-event simulation in virtual time (closed loop: `clients` callers, each sends its next
call when its previous one returns; service 2 ms / 2 ms / 20 ms). It drives the engine's own
`LeastLoaded.order` with the same `Member`/`BackendHealth` objects, so the figures are the
strategy's, not the event loop's timing: deterministic for a seed, and the unit test asserts
on it (tests/unit/models/inference/test_balance.py). A uniform random split is the baseline.

    python -m bench.inference_balance
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeml.models.inference import (
    BackendHealth,
    CircuitBreaker,
    InferenceEngine,
    LeastLoaded,
    Member,
    Signature,
    TaskConfig,
    TensorSpec,
    strategy_named,
)
from edgeml.models.inference.testing import ScriptedBackend, any_rows

__all__ = ["P2cFigures", "p2c_under_a_slow_replica", "shares"]

CALLS = 10_000


def _backends(strategy: str) -> tuple[list[ScriptedBackend], dict[str, float], str]:
    """Three backends for `strategy`, the expected share of each, and what decides it."""
    if strategy == "weighted":
        bs = [ScriptedBackend(n) for n in ("a", "b", "c")]
        return bs, {"a": 0.1, "b": 0.2, "c": 0.7}, "weights a=1 b=2 c=7"
    if strategy == "best_quality":
        bs = [ScriptedBackend(n, metadata={"quality": q})
              for n, q in (("a", 0.90), ("b", 0.95), ("c", 0.80))]  # fmt: skip
        return bs, {"a": 0.0, "b": 1.0, "c": 0.0}, "holdout roc_auc a=0.90 b=0.95 c=0.80"
    if strategy == "lowest_latency":
        bs = [ScriptedBackend(n, delay_s=d) for n, d in (("a", 0.002), ("b", 0.0), ("c", 0.001))]
        # each is measured once first (unmeasured go first), then the fastest takes the rest
        expect = {"a": 1 / CALLS, "b": 1 - 2 / CALLS, "c": 1 / CALLS}
        return bs, expect, "latency a=2 ms b=0 ms c=1 ms"
    if strategy == "route":
        exact = Signature((TensorSpec("input", "FP32", (-1, 3)),), any_rows().outputs)
        bs = [ScriptedBackend("a"), ScriptedBackend("b", signature=exact), ScriptedBackend("c")]
        return bs, {"a": 0.0, "b": 1.0, "c": 0.0}, "b declares (n, 3), a and c any (n, k)"
    if strategy == "least_loaded":  # sequential calls: nothing in flight, p2c is uniform
        bs = [ScriptedBackend(n) for n in ("a", "b", "c")]
        return bs, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, "nothing in flight (one caller)"
    raise ValueError(f"unknown strategy {strategy!r}")


async def _shares(strategy: str, calls: int, seed: int) -> dict[str, Any]:
    backends, expect, basis = _backends(strategy)
    weights = {"a": 1.0, "b": 2.0, "c": 7.0} if strategy == "weighted" else None
    engine = InferenceEngine(seed=seed)
    config = TaskConfig(strategy=strategy_named(strategy, weights=weights), probe_interval_s=0)
    engine.add_task("t", backends, config)
    x = {"input": np.zeros((1, 3), np.float32)}
    answered: Counter[str] = Counter()
    for _ in range(calls):
        result = await engine.infer("t", x)
        answered[result.calls[-1].backend] += 1
    got = {b.name: answered[b.name] / calls for b in backends}
    return {"strategy": strategy, "basis": basis, "calls": calls, "expected": expect,
            "shares": got}  # fmt: skip


def shares(strategy: str, calls: int = CALLS, seed: int = 0) -> dict[str, Any]:
    """The share of `calls` sequential calls each backend answered (module docstring)."""
    return asyncio.run(_shares(strategy, calls, seed))


@dataclass(frozen=True)
class P2cFigures:
    """Calls and peak in-flight per backend, for p2c and for a uniform random split."""

    service_s: dict[str, float]
    calls: dict[str, int]
    peak_in_flight: dict[str, int]
    uniform_calls: dict[str, int]
    uniform_peak_in_flight: dict[str, int]
    p2c_makespan_s: float
    uniform_makespan_s: float


def _simulate(service: dict[str, float], clients: int, calls: int, seed: int,
              choose: Any) -> tuple[Counter[str], dict[str, int], float]:  # fmt: skip
    members = [Member(ScriptedBackend(n), BackendHealth(CircuitBreaker())) for n in service]
    rng = random.Random(seed)
    count: Counter[str] = Counter()
    peak = dict.fromkeys(service, 0)
    events: list[tuple[float, int, int]] = []  # (done at, tie-break, member index)
    now, sent, tie = 0.0, 0, 0

    def send() -> None:
        nonlocal sent, tie
        m = choose(members, rng)
        i = members.index(m)
        m.health.in_flight += 1
        name = m.backend.name
        peak[name] = max(peak[name], m.health.in_flight)
        count[name] += 1
        sent += 1
        tie += 1
        heapq.heappush(events, (now + service[name], tie, i))

    for _ in range(min(clients, calls)):
        send()
    while events:
        now, _, i = heapq.heappop(events)
        members[i].health.in_flight -= 1
        if sent < calls:
            send()  # the caller whose call returned sends its next one
    return count, peak, now


def p2c_under_a_slow_replica(
    clients: int = 20, calls: int = CALLS, seed: int = 0,
    service: Sequence[tuple[str, float]] = (("fast0", 0.002), ("fast1", 0.002), ("slow", 0.020)),
) -> P2cFigures:  # fmt: skip
    """The module docstring's simulation: `LeastLoaded` vs a uniform random choice."""
    times = dict(service)
    p2c = LeastLoaded()
    a, pa, ta = _simulate(times, clients, calls, seed, lambda ms, r: p2c.order(ms, r)[0])
    b, pb, tb = _simulate(times, clients, calls, seed, lambda ms, r: r.choice(ms))
    return P2cFigures(times, dict(a), pa, dict(b), pb, round(ta, 3), round(tb, 3))


def main() -> None:
    for strategy in ("weighted", "best_quality", "lowest_latency", "route", "least_loaded"):
        r = shares(strategy)
        got = "  ".join(f"{k} {v:.4f} (configured {r['expected'][k]:.4f})"
                        for k, v in r["shares"].items())  # fmt: skip
        print(f"{strategy:15s} {r['calls']:,} calls [{r['basis']}]: {got}")
    f = p2c_under_a_slow_replica()
    print(f"least_loaded, 20 closed-loop callers, 10,000 calls, service {f.service_s} s:")
    print(f"  p2c     calls {f.calls} peak in flight {f.peak_in_flight} "
          f"makespan {f.p2c_makespan_s} s")  # fmt: skip
    print(f"  uniform calls {f.uniform_calls} peak in flight {f.uniform_peak_in_flight} "
          f"makespan {f.uniform_makespan_s} s")  # fmt: skip


if __name__ == "__main__":
    main()
