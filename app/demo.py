"""The main job in one command: a broker, a worker, a paced simulator, live alerts printed.

Faults are made frequent (and the warm-up short) so alerts show within a minute; the web page
URL is printed as soon as the worker is ready. Ctrl-C (or `duration_s`) stops the worker and
the simulator; the broker keeps running (`edgeml broker down` stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeml.app.errors import EdgeMLError
from edgeml.app.settings import Settings
from edgeml.app.tail import TailFilter, tail_topic

__all__ = ["DemoError", "DemoPlan", "run_demo"]

WORKER_READY = "[^Worker]: Ready"


class DemoError(EdgeMLError):
    """The demo could not start one of its parts."""


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs: `devices` sending `hz` readings/s each, event time = wall time."""

    devices: int = 10
    hz: float = 5.0
    incident_every_s: float = 60.0
    warmup_s: float = 30.0
    duration_s: float | None = None
    seed: int = 7


def _ensure_broker(settings: Settings, say: Callable[[str], None]) -> None:
    from edgeml.infra.kafka import broker

    if settings.bootstrap_servers != f"127.0.0.1:{settings.broker_port}":
        say(f"using the broker at {settings.bootstrap_servers}")
        return
    info = broker.status(settings.broker_home)
    if info.running:
        say(f"broker already running on {info.bootstrap_servers} (pid {info.pid})")
        return
    info = broker.start(
        settings.broker_home, settings.broker_port, cache_dir=settings.kafka_cache, echo=say
    )
    say(f"broker up on {info.bootstrap_servers} (pid {info.pid})")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edgeml.app", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_ready(worker: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while WORKER_READY not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise DemoError(f"the worker did not become ready (log: {log}):\n{tail}")
        time.sleep(0.3)


@contextlib.contextmanager
def _running(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def run_demo(
    settings: Settings,
    plan: DemoPlan,
    say: Callable[[str], None],
    on_alert: Callable[[dict[str, Any]], None],
) -> int:
    """Run the demo until Ctrl-C or `plan.duration_s`; returns the number of alerts shown."""
    from edgeml.app.kafka_admin import ensure_topics

    _ensure_broker(settings, say)
    ensure_topics(settings)
    logs = settings.data_dir.parent / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log, sim_log = logs / "worker.log", logs / "simulator.log"
    worker = _spawn(["worker", "-l", "info"], worker_log)
    processes = [worker]
    with _running(processes):
        say(f"worker starting (log: {worker_log}) ...")
        _wait_ready(worker, worker_log)
        say(f"web page: http://{settings.web_host}:{settings.web_port}/dashboard")
        interval = 1.0 / plan.hz
        count = int((plan.duration_s or 7 * 86_400) * plan.hz) + 1
        simulator = _spawn(
            [
                "simulate",
                "--devices",
                str(plan.devices),
                "--interval",
                f"{interval:g}",
                "--rate",
                f"{plan.devices * plan.hz:g}",
                "--count",
                str(count),
                "--seed",
                str(plan.seed),
                "--incident-every",
                f"{plan.incident_every_s:g}",
                "--warmup",
                f"{plan.warmup_s:g}",
                "--no-progress",
            ],
            sim_log,
        )
        processes.append(simulator)
        say(
            f"simulator: {plan.devices} devices x {plan.hz:g} readings/s, first faults after "
            f"~{plan.warmup_s:g} s (log: {sim_log}); live alerts below, Ctrl-C to stop"
        )
        try:
            outcome = asyncio.run(
                tail_topic(
                    settings, "alerts", on_alert, where=TailFilter(), timeout_s=plan.duration_s
                )
            )
            return outcome.matched
        except KeyboardInterrupt:
            say("stopping the worker and the simulator (the broker keeps running)")
            return 0
