"""Capped exponential backoff with jitter, and a byte-rate limiter: the forwarder's pacing.

>>> b = Backoff(initial_s=0.5, max_s=30.0, jitter=0.5)
>>> [b.ceiling(n) for n in range(8)]
[0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
>>> b.delay(3, random=lambda: 0.0), b.delay(3, random=lambda: 1.0)
(2.0, 4.0)

"Equal jitter": a delay is in [ceiling * (1 - jitter), ceiling], so a fleet of agents that lost
the broker together does not come back in one burst, and no retry waits longer than `max_s`.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delay before retry number `attempt` (0 = the first retry)."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter <= 1")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay: initial * multiplier**attempt, capped at `max_s`."""
        value = self.initial_s
        for _ in range(max(attempt, 0)):  # no float overflow after many attempts
            value *= self.multiplier
            if value >= self.max_s:
                return self.max_s
        return min(value, self.max_s)

    def delay(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        top = self.ceiling(attempt)
        return top * (1.0 - self.jitter) + top * self.jitter * random()


class RateLimiter:
    """At most `bytes_per_s` on average (a token bucket holding one second's worth);
    0 = unlimited. `await take(n)` waits until `n` bytes may go."""

    def __init__(self, bytes_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes_per_s = bytes_per_s
        self._clock = clock
        self._tokens = bytes_per_s
        self._at = clock()

    def wait_s(self, nbytes: int) -> float:
        """Seconds to wait before `nbytes` may go (and takes them)."""
        if self.bytes_per_s <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.bytes_per_s, self._tokens + (now - self._at) * self.bytes_per_s)
        self._at = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.bytes_per_s

    async def take(self, nbytes: int) -> None:
        wait = self.wait_s(nbytes)
        if wait > 0:
            await asyncio.sleep(wait)
