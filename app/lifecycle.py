"""How a worker dies and stops: a crashed agent is a dead worker, and a stop is bounded in time.

Measured against Faust 0.15 / mode 0.7 (issue #9):

- An agent that raises is restarted by its supervisor (`mode.OneForOneSupervisor`, Faust's
  `agent_supervisor` default) and the worker keeps "running"; the events the dead actor had
  taken are never acked. `mode.CrashingSupervisor` does not exit the process either (faust
  issue robinhood/faust#301). `AgentCrashSupervisor` (the app's `agent_supervisor`) instead
  records the crash and exits the process with status 1 at once, without Faust's orderly
  stop: that stop commits offsets, the crashed batch's included.
- On SIGTERM, Faust's `App.on_stop` waits (`stream_wait_empty`) until every event taken by an
  agent is acked: with a batch that never finishes (a crashed actor's unacked events, a send
  to a broker that is down) it logged `wait_empty: Waiting for tasks` for 121 s. `Worker`
  arms a `StopWatchdog` on SIGTERM/SIGINT and on a crash: after `Settings.stop_timeout_s` the
  process exits anyway (status 70), which is what kill -9 does and what the platform is built
  to survive (nothing committed is lost; the uncommitted batch is redone).
  `stream_wait_empty` stays on: without it a rebalance lets a batch of revoked partitions
  finish after their new owner took them, writing stale device state to the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import weakref

import faust
from faust.types import AppT
from mode import OneForOneSupervisor, ServiceT

from edgeml.app.outage import BrokerOutageFilter

__all__ = [
    "EXIT_AGENT_CRASHED",
    "EXIT_STOP_TIMEOUT",
    "AgentCrashSupervisor",
    "StopWatchdog",
    "Worker",
    "WorkerLife",
    "life_of",
]

log = logging.getLogger(__name__)

EXIT_AGENT_CRASHED = 1  # what Faust's worker exits with when its app crashed
EXIT_STOP_TIMEOUT = os.EX_SOFTWARE  # 70: a stop that did not finish in time


class StopWatchdog:
    """Exits the process `timeout_s` after `arm()` unless it exited by itself.

    A thread, not an asyncio task: it must fire when the event loop is blocked too.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._timer: threading.Timer | None = None
        self.exit_code = EXIT_STOP_TIMEOUT

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self, why: str, exit_code: int = EXIT_STOP_TIMEOUT) -> None:
        if self._timer is not None:
            return  # the first reason keeps its deadline
        self.exit_code = exit_code
        timer = threading.Timer(self.timeout_s, self._expire, args=(why,))
        timer.daemon = True
        timer.name = "edgeml-stop-watchdog"
        self._timer = timer
        timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, why: str) -> None:
        log.critical(
            "%s: not stopped after %.1f s, exiting now with status %d (as after kill -9: the "
            "uncommitted batch is redone by the next owner)",
            why, self.timeout_s, self.exit_code,
        )  # fmt: skip
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(self.exit_code)  # no cleanup: cleanup is what did not finish


class WorkerLife:
    """What `/health` knows about the worker's own life: which agent crashed, and why.
    One per app (`life_of(app)`), configured by `create_app`."""

    def __init__(self, stop_timeout_s: float = 8.0, outage_log_interval_s: float = 30.0) -> None:
        self.crashed: str | None = None
        self.watchdog = StopWatchdog(stop_timeout_s)
        self.outage_log_interval_s = outage_log_interval_s

    def configure(self, *, stop_timeout_s: float, outage_log_interval_s: float) -> None:
        self.watchdog.timeout_s = stop_timeout_s
        self.outage_log_interval_s = outage_log_interval_s

    def record_crash(self, agent: str, reason: BaseException) -> str:
        if self.crashed is None:
            self.crashed = f"agent {agent} crashed: {reason!r}"
        return self.crashed


_LIVES: weakref.WeakKeyDictionary[AppT, WorkerLife] = weakref.WeakKeyDictionary()


def life_of(app: AppT) -> WorkerLife:
    """The app's `WorkerLife` (created on first use)."""
    life = _LIVES.get(app)
    if life is None:
        life = _LIVES[app] = WorkerLife()
    return life


class AgentCrashSupervisor(OneForOneSupervisor):
    """Faust's `agent_supervisor` for the platform: an agent that raised crashes the worker.

    Faust also "crashes" an actor with `CancelledError` when a rebalance cancels it; that one
    is restarted as usual (`Restarting on rebalance`).
    """

    async def restart_service(self, service: ServiceT) -> None:
        reason = service.crash_reason
        agent = getattr(service, "agent", None)
        if reason is None or isinstance(reason, asyncio.CancelledError) or agent is None:
            await super().restart_service(service)
            return
        life = life_of(agent.app)
        what = life.record_crash(agent.name, reason)
        log.critical("%s; exiting now with status %d", what, EXIT_AGENT_CRASHED)
        for handler in logging.getLogger().handlers:
            handler.flush()
        # Not `app.crash()`: Faust's orderly stop commits the consumer's offsets, and the
        # crashed batch's events count as acked once `take_events` is closed, so the batch
        # was committed unscored (measured: its readings never got a prediction or a dead
        # letter after the restart). Exiting at once is kill -9, which the platform survives:
        # the uncommitted batch is redone by the next owner.
        os._exit(EXIT_AGENT_CRASHED)


class Worker(faust.Worker):
    """Faust's worker with a bounded stop and quiet broker outages (the app's `Worker`
    setting). Named `Worker` because its log label is the class name: `[^Worker]: Ready` is
    what scripts and tests wait for."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        quiet = BrokerOutageFilter(life_of(self.app).outage_log_interval_s)
        for handler in logger.handlers:
            handler.addFilter(quiet)

    def _on_sigterm(self) -> None:
        self._arm_stop(signal.SIGTERM)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm_stop(signal.SIGINT)
        super()._on_sigint()

    def _arm_stop(self, sig: signal.Signals) -> None:
        life_of(self.app).watchdog.arm(f"stop on {sig.name}")

    def on_worker_shutdown(self) -> None:
        super().on_worker_shutdown()
        life = life_of(self.app)
        if life.crashed and not life.watchdog.armed:
            life.watchdog.arm(life.crashed, exit_code=EXIT_AGENT_CRASHED)
