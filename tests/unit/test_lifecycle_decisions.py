"""Worker lifecycle decisions without a broker: liveness, the crash supervisor, the stop
watchdog and the static group member name."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import mode
import pytest

from edgeml.app import lifecycle
from edgeml.app.lifecycle import EXIT_AGENT_CRASHED, AgentCrashSupervisor, StopWatchdog, life_of
from edgeml.app.settings import Settings
from edgeml.app.web.status import Liveness, liveness

IN_PROGRESS = "batch in progress for"


@pytest.mark.parametrize(
    ("crashed", "batch_s", "reachable", "expected"),
    [
        (None, 0.0, None, Liveness(True, "idle")),
        (None, 5.0, None, Liveness(True, "processing")),
        (None, 119.9, True, Liveness(True, "processing")),
        # overdue: stuck if the broker answers, waiting (alive) if it does not
        (None, 121.0, True, Liveness(False, f"stuck: {IN_PROGRESS} 121 s, the broker answers")),
        (None, 121.0, False, Liveness(True, f"waiting for the broker: {IN_PROGRESS} 121 s")),
        (None, 3600.0, False, Liveness(True, f"waiting for the broker: {IN_PROGRESS} 3600 s")),
        # a crashed agent is a dead worker, whatever else holds
        ("agent score_readings crashed: ValueError('x')", 0.0, True,
         Liveness(False, "agent score_readings crashed: ValueError('x')")),
        ("agent score_readings crashed: ValueError('x')", 500.0, False,
         Liveness(False, "agent score_readings crashed: ValueError('x')")),
    ],
)  # fmt: skip
def test_liveness(
    crashed: str | None, batch_s: float, reachable: bool | None, expected: Liveness
) -> None:
    verdict = liveness(
        crashed=crashed, batch_s=batch_s, stall_after_s=120.0, broker_reachable=reachable
    )
    assert verdict == expected


class _App:
    """What the supervisor needs of a Faust app: `crash()` (weak-referenceable for life_of)."""

    def __init__(self) -> None:
        self.crashed_with: BaseException | None = None

    async def crash(self, reason: BaseException) -> None:
        self.crashed_with = reason


class _Agent:
    def __init__(self, app: _App) -> None:
        self.app = app
        self.name = "score_readings"


class _Actor:
    def __init__(self, agent: _Agent, reason: BaseException | None) -> None:
        self.agent = agent
        self.crash_reason = reason


@pytest.fixture
def no_exit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The watchdog's `os._exit` records its status instead of ending pytest."""
    codes: list[int] = []
    monkeypatch.setattr(lifecycle.os, "_exit", codes.append)
    return codes


@pytest.fixture
def restarted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    async def restart(self: Any, service: Any) -> None:
        calls.append(service)

    monkeypatch.setattr(mode.OneForOneSupervisor, "restart_service", restart)
    return calls


async def test_an_agent_that_raised_exits_the_worker_without_an_orderly_stop(
    restarted: list[Any], no_exit: list[int]
) -> None:
    app = _App()
    reason = ValueError("cannot convert float NaN to integer")
    await AgentCrashSupervisor().restart_service(_Actor(_Agent(app), reason))  # type: ignore[arg-type]
    assert no_exit == [EXIT_AGENT_CRASHED]
    assert app.crashed_with is None  # an orderly stop would commit the crashed batch
    assert restarted == []
    life = life_of(app)  # type: ignore[arg-type]
    assert (
        life.crashed
        == "agent score_readings crashed: ValueError('cannot convert float NaN to integer')"
    )


async def test_an_actor_cancelled_by_a_rebalance_is_restarted(restarted: list[Any]) -> None:
    app = _App()
    actor = _Actor(_Agent(app), asyncio.CancelledError())
    await AgentCrashSupervisor().restart_service(actor)  # type: ignore[arg-type]
    assert restarted == [actor]
    assert app.crashed_with is None
    assert life_of(app).crashed is None  # type: ignore[arg-type]


def test_the_first_crash_is_the_one_reported() -> None:
    life = lifecycle.WorkerLife()
    life.record_crash("score_readings", ValueError("first"))
    life.record_crash("analytics", KeyError("second"))
    assert life.crashed == "agent score_readings crashed: ValueError('first')"


def test_the_watchdog_exits_once_armed_and_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []
    fired = threading.Event()

    def fake_exit(code: int) -> None:
        codes.append(code)
        fired.set()

    monkeypatch.setattr(lifecycle.os, "_exit", fake_exit)
    watchdog = StopWatchdog(timeout_s=0.05)
    watchdog.arm("stop on SIGTERM")
    watchdog.arm("later reason", exit_code=1)  # the first reason keeps its deadline and code
    assert fired.wait(10)
    assert codes == [lifecycle.EXIT_STOP_TIMEOUT]


def test_a_disarmed_watchdog_does_not_exit(no_exit: list[int]) -> None:
    watchdog = StopWatchdog(timeout_s=0.05)
    watchdog.arm("stop on SIGTERM")
    watchdog.disarm()
    threading.Event().wait(0.2)
    assert no_exit == [] and not watchdog.armed


@pytest.mark.parametrize(
    ("worker_name", "expected"),
    [
        (None, f"{socket.gethostname()}-7001"),
        ("edge-box-3", "edge-box-3"),
        ("", None),  # dynamic membership
    ],
)
def test_group_instance_id(worker_name: str | None, expected: str | None) -> None:
    settings = Settings(worker_name=worker_name, web_port=7001)
    assert settings.group_instance_id() == expected


def test_the_app_is_a_static_member_with_the_chosen_session_timeout(
    settings_factory: Callable[..., Settings],
) -> None:
    from edgeml.app.factory import create_app

    settings = settings_factory(worker_name="edge-box-3", session_timeout_s=12.0)
    app = create_app(settings)
    assert app.conf.consumer_group_instance_id == "edge-box-3"
    assert app.conf.broker_session_timeout == 12.0
    assert app.conf.agent_supervisor is AgentCrashSupervisor
    assert app.conf.Worker is lifecycle.Worker
    assert life_of(app).watchdog.timeout_s == settings.stop_timeout_s
