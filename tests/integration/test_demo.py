"""`run_demo`, README's main job, against the session broker: it starts a worker and a paced
simulator, prints the web page once the worker is ready, shows the live alerts the worker
raises, and on Ctrl-C stops both children (the broker, not its own, keeps running)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from edgeml.app.demo import DemoPlan, run_demo
from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration


def _children(parent: int) -> list[str]:
    """Command lines of `parent`'s live child processes (Linux `ps`)."""
    listing = subprocess.run(
        ["ps", "-o", "args=", "--ppid", str(parent)], capture_output=True, text=True, check=False
    )
    return [line for line in listing.stdout.splitlines() if line.strip()]


def test_demo_shows_live_alerts_until_ctrl_c_and_then_stops_its_children(
    settings_factory: Callable[..., Settings], use_settings: Callable[[Settings], None]
) -> None:
    settings = settings_factory()
    use_settings(settings)  # the worker and the simulator are children that read EDGEML_*
    said: list[str] = []
    alerts: list[dict[str, Any]] = []
    # Small enough to be quick, large enough for alerts: the detectors need 300 readings of a
    # device to be warm (6 s at 50/s), and the simulator places a fault only where 30 s of
    # normal readings still follow it. Seed 7 with this plan puts a spike on each of the 4
    # devices 7-10 s in (measured offline with `Scorer`: 4 open alerts, the first at 7.3 s).
    # `duration_s` only bounds a failing run: the first alert shown presses Ctrl-C.
    plan = DemoPlan(devices=4, hz=50.0, incident_every_s=1.0, warmup_s=7.0, duration_s=40.0)

    def on_alert(record: dict[str, Any]) -> None:
        alerts.append(record)
        if len(alerts) == 1:  # what Ctrl-C does: SIGINT to this (the main) thread
            signal.raise_signal(signal.SIGINT)

    shown = run_demo(settings, plan, say=said.append, on_alert=on_alert)

    assert said[0] == f"using the broker at {settings.bootstrap_servers}"
    assert f"web page: http://{settings.web_host}:{settings.web_port}/dashboard" in said
    assert any(line.startswith("simulator: 4 devices x 50 readings/s") for line in said)
    assert said[-1] == "stopping the worker and the simulator (the broker keeps running)"
    assert shown == 0 and len(alerts) >= 1
    assert alerts[0]["state"] == "open"
    assert alerts[0]["device_id"] in {f"dev-{n:04d}" for n in range(1, 5)}
    logs = settings.data_dir.parent / "demo"
    assert "[^Worker]: Ready" in (logs / "worker.log").read_text(errors="replace")
    assert not [
        line
        for line in _children(os.getpid())
        if " -m app worker" in line or " -m app simulate" in line
    ], "the demo left its worker or simulator running"
