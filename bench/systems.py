"""The systems under test, each started as its own process: A, B and C.

- **A** `bench.passthrough`: raw aiokafka consume → produce of the same bytes (the ceiling);
- **B** `bench.noop`: a Faust no-op agent configured like the worker (Faust's floor);
- **C** `python -m edgeml.app worker`: the real worker (validation, features, river, ONNX, table
  state, predictions, alerts).

`start(variant, env, prefix, workers=1)` launches and waits until every process logs that it is
ready; `Running.stop()` sends SIGTERM (then SIGKILL). Logs go to the run directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.common import ROOT, BenchEnv, free_port
from bench.noop import OUTPUT as NOOP_OUTPUT
from bench.passthrough import READY as PASSTHROUGH_READY
from edgeml.topics import catalog

__all__ = ["VARIANTS", "Running", "Variant", "input_topic", "output_topic", "start"]

Variant = Literal["A", "B", "C"]
VARIANTS: tuple[Variant, ...] = ("A", "B", "C")
NAMES: dict[Variant, str] = {
    "A": "raw aiokafka passthrough",
    "B": "Faust no-op agent",
    "C": "full pipeline (worker)",
}
_FAUST_READY = "[^Worker]: Ready"


class StartFailed(RuntimeError):
    """A system under test exited or did not become ready in time."""


def input_topic(prefix: str) -> str:
    return f"{prefix}{catalog.READINGS.name}"


def output_topic(variant: Variant, prefix: str) -> str:
    """Where the variant writes one output message per input message."""
    return {
        "A": f"{prefix}passthrough-out",
        "B": f"{prefix}{NOOP_OUTPUT}",
        "C": f"{prefix}{catalog.PREDICTIONS.name}",
    }[variant]


def alerts_topic(prefix: str) -> str:
    return f"{prefix}{catalog.ALERTS.name}"


def changelog_topic(app_id: str) -> str:
    return catalog.STATE_BY_DEVICE.changelog_topic(app_id)


@dataclass
class Running:
    """Started processes of one variant; `app_id` is the Faust app id / consumer group."""

    variant: Variant
    app_id: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, timeout_s: float = 25.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _command(variant: Variant, env: BenchEnv, prefix: str, app_id: str) -> list[str]:
    if variant == "A":
        return [
            sys.executable, "-m", "bench.passthrough", "--bootstrap", env.bootstrap,
            "--input", input_topic(prefix), "--output", output_topic("A", prefix),
            "--group", app_id, "--linger-ms", str(env.linger_ms),
        ]  # fmt: skip
    if variant == "B":
        return [sys.executable, "-m", "bench.noop", "worker", "-l", "info"]
    return [sys.executable, "-m", "edgeml.app", "worker", "-l", "info"]


def _environment(env: BenchEnv, prefix: str, app_id: str, index: int) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    return {
        **base,
        "PYTHONUNBUFFERED": "1",
        "EDGEML_BOOTSTRAP_SERVERS": env.bootstrap,
        "EDGEML_TOPIC_PREFIX": prefix,
        "EDGEML_TOPIC_PARTITIONS": str(env.partitions),
        "EDGEML_APP_ID": app_id,
        "EDGEML_WEB_PORT": str(free_port()),
        "EDGEML_DATA_DIR": str(env.run_dir / f"{app_id}-{index}-data"),
        "EDGEML_STORE": env.store,
        "EDGEML_PRODUCER_LINGER_MS": str(env.linger_ms),
    }


def start(
    variant: Variant,
    env: BenchEnv,
    prefix: str,
    *,
    app_id: str,
    workers: int = 1,
    timeout_s: float = 120.0,
    extra_env: dict[str, str] | None = None,
) -> Running:
    """Start `workers` processes of `variant` reading `<prefix>sensor-readings`; wait for ready."""
    running = Running(variant, app_id)
    marker = PASSTHROUGH_READY if variant == "A" else _FAUST_READY
    for index in range(workers):
        log = env.run_dir / f"{app_id}-{index}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _command(variant, env, prefix, app_id),
                cwd=ROOT,
                env={
                    **_environment(env, prefix, app_id, index),
                    **(dict(env.worker_env) if variant != "A" else {}),
                    **(extra_env or {}),
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the driver reaches it only via stop()
            )
        running.procs.append(proc)
        running.logs.append(log)
    deadline = time.monotonic() + timeout_s
    pending = list(range(workers))
    while pending:
        for index in list(pending):
            if marker in running.logs[index].read_text(errors="replace"):
                pending.remove(index)
        if not pending:
            break
        if not running.alive() or time.monotonic() > deadline:
            tail = running.log_tail()
            running.stop()
            what = "exited" if not running.alive() else f"was not ready in {timeout_s:.0f} s"
            raise StartFailed(f"{NAMES[variant]} {what}:\n{tail}")
        time.sleep(0.1)
    return running
