"""Selection strategies: in which order a task's healthy backends are tried.

Each strategy returns every candidate, best first; the engine calls the first and fails over
down the list within the call's deadline, so a strategy decides the *share* of first calls and
never whether a call is answered. Randomness comes from the engine's seeded `random.Random`, so
a test (or a bench over 10,000 calls) sees the same choices every run.

- `lowest_latency`: smallest EWMA latency first; backends not yet measured go first, so each
  gets measured.
- `best_quality`: highest `metadata["quality"]` (the registry manifest's holdout metric), then
  lowest latency; unknown quality goes last.
- `least_loaded`: power of two choices on in-flight calls (two random candidates, the one with
  fewer in flight first; Mitzenmacher 2001: max load ln ln n instead of ln n / ln ln n).
- `weighted`: the first backend is drawn with probability weight / total (the `weights` by
  backend name or model ref; unnamed ones weigh `default_weight`), the rest by weight.
- `route`: data-type routing: the backends whose declared inputs fix the most dimensions
  first (a backend for exactly (n, 29) before one taking any (n, k)), then lowest latency.
  Every strategy only ever sees backends whose signature accepts the inputs (the engine
  filters), so `route` is about preference among those.

>>> strategy_named("lowest_latency").name
'lowest_latency'
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edgeml.models.inference.backends import Backend
from edgeml.models.inference.health import BackendHealth

__all__ = [
    "STRATEGIES",
    "BestQuality",
    "LeastLoaded",
    "LowestLatency",
    "Member",
    "Route",
    "Strategy",
    "Weighted",
    "strategy_named",
]


@dataclass(eq=False, slots=True)
class Member:
    """A backend in a task's pool, with its health."""

    backend: Backend
    health: BackendHealth


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]: ...


def _latency(m: Member) -> float:
    ewma = m.health.latency.ewma
    return -1.0 if ewma is None else ewma


@dataclass(frozen=True, slots=True)
class LowestLatency:
    name: str = "lowest_latency"

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]:
        return sorted(members, key=lambda m: (_latency(m), m.backend.name))


@dataclass(frozen=True, slots=True)
class BestQuality:
    name: str = "best_quality"

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]:
        def key(m: Member) -> tuple[float, float, str]:
            quality = m.backend.metadata.get("quality")
            q = float(quality) if isinstance(quality, int | float) else float("-inf")
            return (-q, _latency(m), m.backend.name)

        return sorted(members, key=key)


@dataclass(frozen=True, slots=True)
class LeastLoaded:
    name: str = "least_loaded"

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]:
        if len(members) < 2:
            return list(members)
        a, b = rng.sample(range(len(members)), 2)
        first = a if members[a].health.in_flight <= members[b].health.in_flight else b
        rest = sorted(
            (m for i, m in enumerate(members) if i != first),
            key=lambda m: (m.health.in_flight, _latency(m), m.backend.name),
        )
        return [members[first], *rest]


@dataclass(frozen=True, slots=True)
class Weighted:
    weights: Mapping[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    name: str = "weighted"

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.weights.values()) or self.default_weight < 0:
            raise ValueError("weights must be >= 0")

    def weight(self, m: Member) -> float:
        w = self.weights.get(m.backend.name)
        if w is None:
            w = self.weights.get(m.backend.model_ref, self.default_weight)
        return float(w)

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]:
        weights = [self.weight(m) for m in members]
        total = sum(weights)
        if not members or total <= 0.0:
            return sorted(members, key=lambda m: m.backend.name)
        pick = rng.random() * total
        first = len(members) - 1
        for i, w in enumerate(weights):
            pick -= w
            if pick < 0.0:
                first = i
                break
        rest = sorted(
            (m for i, m in enumerate(members) if i != first),
            key=lambda m: (-self.weight(m), m.backend.name),
        )
        return [members[first], *rest]


@dataclass(frozen=True, slots=True)
class Route:
    name: str = "route"

    def order(self, members: Sequence[Member], rng: random.Random) -> list[Member]:
        return sorted(
            members,
            key=lambda m: (-m.backend.signature.specificity(), _latency(m), m.backend.name),
        )


STRATEGIES = ("lowest_latency", "best_quality", "least_loaded", "weighted", "route")


def strategy_named(name: str, *, weights: Mapping[str, float] | None = None) -> Strategy:
    """A strategy by its configured name (`STRATEGIES`); `weights` for `weighted`."""
    if name == "weighted":
        return Weighted(dict(weights or {}))
    if weights:
        raise ValueError(f"weights only apply to the 'weighted' strategy, not {name!r}")
    by_name: dict[str, Strategy] = {
        "lowest_latency": LowestLatency(),
        "best_quality": BestQuality(),
        "least_loaded": LeastLoaded(),
        "route": Route(),
    }
    try:
        return by_name[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}"
        ) from None
