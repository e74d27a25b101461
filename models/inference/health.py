"""Per-backend health: a circuit breaker, latency (EWMA and p99 over a window), error rate,
in-flight calls, and the golden-set probe.

The breaker (`CircuitBreaker`) is closed while a backend answers; `failures` consecutive
failures (errors, timeouts, bad answers) open it, and an open breaker admits no calls for
`cooldown_s`; then it is half-open and admits `half_open_calls` trial calls at a time: a success
closes it, a failure opens it again for another cooldown. A failed golden-set probe opens it
too (`trip`), and a passing probe closes it (`reset`): unhealthy backends are taken out and
brought back after passing probes, whatever the traffic.

>>> now = [0.0]
>>> b = CircuitBreaker(failures=2, cooldown_s=5.0, clock=lambda: now[0])
>>> b.record_failure(); b.record_failure(); b.state
'open'
>>> b.allow()
False
>>> now[0] = 5.0; b.allow(), b.state
(True, 'half_open')
>>> b.record_success(); b.state
'closed'
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgeml.models.inference.backends import Backend

__all__ = [
    "BackendHealth",
    "BreakerConfig",
    "CircuitBreaker",
    "GoldenSet",
    "LatencyWindow",
    "ProbeResult",
    "describe",
    "finite_rows",
    "probe",
]

Clock = Callable[[], float]
State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Breaker tuning: consecutive failures to open, seconds open, trial calls when half-open."""

    failures: int = 3
    cooldown_s: float = 5.0
    half_open_calls: int = 1

    def __post_init__(self) -> None:
        if self.failures < 1 or self.cooldown_s < 0 or self.half_open_calls < 1:
            raise ValueError(
                "BreakerConfig needs failures >= 1, cooldown_s >= 0, half_open_calls >= 1"
            )


class CircuitBreaker:
    """Closed / open / half-open, with a cooldown (module docstring)."""

    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 5.0,
        half_open_calls: int = 1,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = BreakerConfig(failures, cooldown_s, half_open_calls)
        self.clock = clock
        self.state: State = "closed"
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self.trials = 0  # half-open calls admitted and not yet finished
        self.opened = 0  # how many times it opened (a metric)
        self.reason = ""

    @classmethod
    def of(cls, config: BreakerConfig, clock: Clock = time.monotonic) -> CircuitBreaker:
        return cls(config.failures, config.cooldown_s, config.half_open_calls, clock=clock)

    def _refresh(self) -> None:
        if self.state == "open" and self.clock() - self.opened_at >= self.config.cooldown_s:
            self.state = "half_open"
            self.trials = 0

    def available(self) -> bool:
        """Would `allow` admit a call now? (Does not take a half-open trial slot.)"""
        self._refresh()
        if self.state == "open":
            return False
        return self.state == "closed" or self.trials < self.config.half_open_calls

    def allow(self) -> bool:
        """Admit one call (takes a trial slot when half-open)."""
        if not self.available():
            return False
        if self.state == "half_open":
            self.trials += 1
        return True

    def record_success(self) -> None:
        self.consecutive_failures = 0
        if self.state != "closed":
            self.state = "closed"
            self.trials = 0
            self.reason = ""

    def record_failure(self, reason: str = "") -> None:
        self.consecutive_failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive_failures >= self.config.failures
        ):
            self.trip(reason or f"{self.consecutive_failures} consecutive failures")

    def trip(self, reason: str) -> None:
        """Open now (a failed probe, or too many failures)."""
        if self.state != "open":
            self.opened += 1
        self.state = "open"
        self.opened_at = self.clock()
        self.trials = 0
        self.reason = reason

    def reset(self) -> None:
        """Close now (a passing probe)."""
        self.record_success()


class LatencyWindow:
    """EWMA of call latency and percentiles over the last `size` calls (seconds)."""

    def __init__(self, alpha: float = 0.2, size: int = 256) -> None:
        if not 0.0 < alpha <= 1.0 or size < 1:
            raise ValueError("LatencyWindow needs 0 < alpha <= 1 and size >= 1")
        self.alpha = alpha
        self.ewma: float | None = None
        self.window: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self.window.append(seconds)
        self.ewma = seconds if self.ewma is None else self.ewma + self.alpha * (seconds - self.ewma)

    def quantile(self, q: float) -> float | None:
        if not self.window:
            return None
        return float(np.quantile(np.fromiter(self.window, float), q))

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)


@dataclass(slots=True)
class BackendHealth:
    """Everything the engine knows about one backend's recent behaviour."""

    breaker: CircuitBreaker
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=100))
    in_flight: int = 0
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    last_error: str = ""
    probe_ok: bool | None = None  # None: never probed
    probe_s: float | None = None
    probes: int = 0

    @property
    def error_rate(self) -> float:
        """Failed share of the last 100 calls."""
        return 0.0 if not self.outcomes else 1.0 - sum(self.outcomes) / len(self.outcomes)

    @property
    def healthy(self) -> bool:
        return self.breaker.available() and self.probe_ok is not False

    def success(self, seconds: float) -> None:
        self.calls += 1
        self.outcomes.append(True)
        self.latency.add(seconds)
        self.breaker.record_success()

    def failure(self, reason: str, *, timeout: bool = False) -> None:
        self.calls += 1
        self.errors += 1
        self.timeouts += int(timeout)
        self.outcomes.append(False)
        self.last_error = reason
        self.breaker.record_failure(reason)

    def snapshot(self) -> dict[str, Any]:
        p99 = self.latency.p99
        return {
            "state": self.breaker.state,
            "healthy": self.healthy,
            "reason": self.breaker.reason or None,
            "calls": self.calls,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "error_rate": round(self.error_rate, 4),
            "in_flight": self.in_flight,
            "ewma_ms": None if self.latency.ewma is None else round(self.latency.ewma * 1e3, 3),
            "p99_ms": None if p99 is None else round(p99 * 1e3, 3),
            "probe_ok": self.probe_ok,
            "probe_ms": None if self.probe_s is None else round(self.probe_s * 1e3, 3),
            "last_error": self.last_error or None,
        }


@dataclass(frozen=True, slots=True)
class GoldenSet:
    """Known inputs and, where known, the outputs a healthy backend returns for them.

    `expected` comes from the verified in-process model of the same version (the registry's
    holdout rows, `loading.golden_set`); a backend then passes when every output named there is
    within `atol`. Without `expected`, outputs only have to be finite with one value per row.
    """

    inputs: Mapping[str, np.ndarray]
    expected: Mapping[str, np.ndarray] = field(default_factory=dict)
    atol: float = 1e-5

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def check(self, outputs: Mapping[str, np.ndarray], output: str) -> str | None:
        """Why `outputs` fail this golden set, or None when they pass."""
        got = outputs.get(output)
        if got is None:
            return f"no output {output!r} (got {', '.join(outputs) or 'none'})"
        arr = np.asarray(got, dtype=np.float64)
        if len(arr) != self.rows:
            return f"{len(arr)} output rows for {self.rows} golden rows"
        if not np.all(np.isfinite(arr)):
            return "non-finite output on the golden set"
        for name, want in self.expected.items():
            have = outputs.get(name)
            if have is None:
                return f"no output {name!r}"
            diff = float(np.max(np.abs(np.asarray(have, np.float64) - want), initial=0.0))
            if not diff <= self.atol:
                return f"{name} differs from the golden answers by {diff:.3g} (atol {self.atol})"
        return None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    seconds: float
    reason: str = ""


async def probe(backend: Backend, golden: GoldenSet, output: str, timeout_s: float) -> ProbeResult:
    """One golden-set call within `timeout_s`; never raises."""
    start = time.perf_counter()
    try:
        outputs = await asyncio.wait_for(backend.infer(golden.inputs), timeout_s)
    except TimeoutError:
        return ProbeResult(False, time.perf_counter() - start, f"probe timed out ({timeout_s} s)")
    except Exception as exc:
        return ProbeResult(False, time.perf_counter() - start, f"probe failed: {_describe(exc)}")
    seconds = time.perf_counter() - start
    reason = golden.check(outputs, output)
    return ProbeResult(reason is None, seconds, "" if reason is None else f"probe: {reason}")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def finite_rows(values: np.ndarray, rows: int) -> str | None:
    """Why an answer is unusable (wrong row count, non-finite values), or None."""
    if values.ndim == 0 or len(values) != rows:
        return f"{0 if values.ndim == 0 else len(values)} output rows for {rows} input rows"
    if values.dtype.kind in "fc" and not bool(np.all(np.isfinite(values))):
        return "non-finite output"
    return None


def describe(exc: BaseException) -> str:
    """`ExceptionType: message` on one line."""
    return _describe(exc)
