"""Watching a scenario while it runs: progress, resume times, stalls and unexpected exits.

Progress is the sum of the end offsets of `predictions` and the dead-letter topic (one output
message per single-reading input message), read with `bench.checker.Probe`, so watching costs
the worker nothing. A *stall* is no new output for `stall_s` while input is waiting (the
worker's `/health` lag is above 0) outside a grace period after a deliberate kill or outage;
no new output with lag 0 is not a stall (whatever is missing then is *lost*, and the verdict
counts it). A worker that exits without the harness killing it is a failure too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.checker import Probe
from bench.common import emit
from bench.faults.procs import Worker

__all__ = ["Watch"]


@dataclass
class Watch:
    """Polls a run's outputs; `failures` collects what must not happen, `events` the story."""

    probe: Probe
    topics: Sequence[str]  # predictions, dead letters
    workers: list[Worker]
    stall_s: float = 45.0
    resume_timeout_s: float = 120.0
    poll_s: float = 0.2
    failures: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    last_total: int = 0
    last_change: float = field(default_factory=time.monotonic)
    grace_until: float = 0.0
    _reported_exits: set[tuple[str, int]] = field(default_factory=set)

    def note(self, line: str) -> None:
        self.events.append(line)
        emit(f"    {line}")

    def fail(self, line: str) -> None:
        self.failures.append(line)
        self.note(f"FAIL {line}")

    def total(self) -> int:
        """Output messages so far (0 while a topic has no metadata, e.g. the broker is down)."""
        try:
            return sum(self.probe.total(self.probe.end(t)) for t in self.topics)
        except Exception:  # broker down (R3): no progress readable, not a harness error
            return self.last_total

    def predicted(self) -> int:
        try:
            return self.probe.total(self.probe.end(self.topics[0]))
        except Exception:
            return 0

    def grace(self, seconds: float | None = None) -> None:
        """No stall is counted for `seconds` (default: the resume timeout) from now."""
        self.grace_until = time.monotonic() + (self.resume_timeout_s if seconds is None else
                                               seconds)  # fmt: skip

    def poll(self) -> int:
        total = self.total()
        now = time.monotonic()
        if total != self.last_total:
            self.last_total, self.last_change = total, now
        for worker in self.workers:
            rc = worker.returncode
            key = (worker.name, worker.starts)
            if rc is not None and not worker.expected_exit and key not in self._reported_exits:
                self._reported_exits.add(key)
                self.fail(f"worker {worker.name} exited by itself (rc {rc}):\n{worker.tail(15)}")
        return total

    def stopped(self) -> str:
        """'' while output flows (or in a grace period); after `stall_s` without output:
        'idle' when nothing waits (worker lag 0), else 'stall' (recorded as a failure)."""
        now = time.monotonic()
        if now < self.grace_until or now - self.last_change < self.stall_s:
            return ""
        alive = [w for w in self.workers if w.alive()]
        health = [(w.name, *w.get("/health")) for w in alive]
        lags = [b["lag"]["total"] for _, _, b in health if isinstance(b, dict) and "lag" in b]
        if alive and len(lags) == len(alive) and sum(lags) == 0:
            return "idle"
        said = (
            "; ".join(
                f"{name} /health {status} {body.get('status') if isinstance(body, dict) else body} "
                f"lag {body.get('lag', {}).get('total') if isinstance(body, dict) else '?'}"
                for name, status, body in health
            )
            or "no worker alive"
        )
        quiet = now - self.last_change
        self.fail(f"stalled: no output for {quiet:.0f} s at {self.last_total:,} messages ({said})")
        self.last_change = now  # the next poll does not report this stall again
        return "stall"

    def dead(self) -> bool:
        return not any(w.alive() for w in self.workers)

    def wait_predicted(self, target: int, timeout_s: float = 600.0) -> bool:
        """Until `target` predictions exist; False (recorded) after a stall, idle output, no
        worker alive, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.predicted() < target:
            self.poll()
            state = self.stopped()
            if state or self.dead() or time.monotonic() > deadline:
                why = state or ("no worker alive" if self.dead() else "timeout")
                self.fail(f"{why}: {self.predicted():,} of the {target:,} predictions wanted "
                          "before the fault")  # fmt: skip
                return False
            time.sleep(self.poll_s)
        return True

    def resumed(self, worker: Worker, since_total: int) -> float | None:
        """Seconds from `worker`'s latest start to the first output after `since_total`."""
        deadline = time.monotonic() + self.resume_timeout_s
        while time.monotonic() < deadline:
            if self.poll() > since_total:
                return time.time() - worker.started_at
            if not worker.alive():
                break
            time.sleep(0.05)
        self.fail(f"{worker.name} wrote nothing within {self.resume_timeout_s:.0f} s of its "
                  "restart")  # fmt: skip
        return None

    def settle(
        self, expected: int, producer_done: Callable[[], bool], quiet_s: float = 5.0
    ) -> None:
        """Until `expected` output messages exist, the producer is done and output has been
        quiet for `quiet_s`; or output stopped (stall, or idle with messages missing: the
        verdict counts those lost); or no worker is alive."""
        while True:
            total = self.poll()
            quiet = time.monotonic() - self.last_change
            if producer_done() and total >= expected and quiet >= quiet_s:
                return
            if self.dead():
                self.fail("no worker alive at the end of the run")
                return
            if self.stopped():
                return
            time.sleep(self.poll_s)
