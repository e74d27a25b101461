"""The processes a fault scenario starts, kills and restarts: Kafka brokers and workers.

`Broker` is either the harness's own single-node broker (`infra.kafka.broker` on free ports in
a temporary home, so R3 can kill -9 it and start the same home and port again) or an external
one (`--bootstrap`, or the test session's broker), which can only be used, never killed.

`Worker` is one real `python -m edgeml.app worker` (the `edgeml worker` entry point) with
`EDGEML_STORE=rocksdb://` and its own data dir, web port and log file; `start` returns once
it logs that it is ready, `kill` is SIGKILL, `terminate` SIGTERM and returns the seconds it
took to exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, free_port

__all__ = ["Broker", "Worker", "WorkerFailed"]

READY = "[^Worker]: Ready"


class WorkerFailed(RuntimeError):
    """A worker exited or was not ready in time (with the end of its log)."""


@dataclass
class Broker:
    """A Kafka to run against; `own` brokers live in `home` and can be killed and restarted."""

    bootstrap: str
    home: Path | None = None
    port: int = 0
    controller_port: int = 0

    @property
    def own(self) -> bool:
        return self.home is not None

    @classmethod
    def start_own(cls, home: Path) -> Broker:
        broker = cls("", home=home, port=free_port(), controller_port=free_port())
        broker.restart()
        return broker

    def restart(self) -> float:
        """Start the broker from its home on its ports; the seconds until it served metadata."""
        from edgeml.app.settings import Settings
        from edgeml.infra.kafka import broker as kafka

        assert self.home is not None, "an external broker cannot be started"
        began = time.monotonic()
        info = kafka.start(self.home, self.port, controller_port=self.controller_port,
                           cache_dir=Settings().kafka_cache, timeout_s=120.0,
                           die_with_parent=True)  # fmt: skip
        self.bootstrap = info.bootstrap_servers
        return time.monotonic() - began

    def kill9(self) -> None:
        """SIGKILL the broker's JVM (no controlled shutdown) and wait until it is gone."""
        from edgeml.infra.kafka import broker as kafka

        assert self.home is not None, "an external broker cannot be killed"
        info = kafka.status(self.home)
        if info.pid is None:
            raise RuntimeError(f"no broker runs from {self.home}")
        os.kill(info.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while kafka.status(self.home).running and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        if self.home is not None:
            from edgeml.infra.kafka import broker as kafka

            kafka.stop(self.home)


@dataclass
class Worker:
    """One worker process of a scenario; `name` makes its log, data dir and port its own."""

    name: str
    bootstrap: str
    prefix: str
    data_dir: Path
    log_dir: Path
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0  # time.time() of the latest start
    expected_exit: bool = False  # set before the harness itself stops or kills it

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
        return {
            **base,
            "PYTHONUNBUFFERED": "1",
            "EDGEML_BOOTSTRAP_SERVERS": self.bootstrap,
            "EDGEML_TOPIC_PREFIX": self.prefix,
            "EDGEML_TOPIC_PARTITIONS": str(self.partitions),
            "EDGEML_TOPIC_REPLICATION": "1",
            "EDGEML_APP_ID": self.prefix.rstrip("-"),
            "EDGEML_WEB_PORT": str(self.web_port),
            "EDGEML_DATA_DIR": str(self.data_dir),
            "EDGEML_STORE": "rocksdb://",
            # Static membership (issue #9) needs a distinct name per worker on one host; a
            # worker without that setting ignores it.
            "EDGEML_WORKER_NAME": self.name,
            **self.extra_env,
        }

    def start(self, *, timeout_s: float = 120.0, wait_ready: bool = True) -> float:
        """Start (again); returns the seconds until it logged that it is ready (0 if not
        waited for). Raises `WorkerFailed` if it exits first or is not ready in time."""
        if self.alive():
            raise RuntimeError(f"worker {self.name} is still running")
        self.starts += 1
        self.expected_exit = False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.started_at = time.time()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgeml.app", "worker", "--loglevel", "info"],
                cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        if not wait_ready:
            return 0.0
        deadline = began + timeout_s
        while not self.ready():
            if not self.alive() or time.monotonic() > deadline:
                what = f"exited {self.returncode}" if not self.alive() else "was not ready"
                self.kill()
                raise WorkerFailed(f"worker {self.name} {what}:\n{self.tail()}")
            time.sleep(0.2)
        return time.monotonic() - began

    def ready(self) -> bool:
        """Faust logged that the worker is ready, or `/health` says it is (the log line has
        come and gone with changes to the worker's logging: either will do)."""
        if READY in self.log.read_text(errors="replace"):
            return True
        status, body = self.get("/health", timeout_s=1.0)
        return status == 200 and isinstance(body, dict) and body.get("ready") is True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout_s: float = 60.0) -> float | None:
        """SIGTERM; the seconds until it exited, or None (then SIGKILLed) after `timeout_s`."""
        assert self.proc is not None
        self.expected_exit = True
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return time.monotonic() - began

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log {self.log})"
        return f"--- {self.log}\n" + "\n".join(text)

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
        """GET a JSON path of the web API: (status, body); (0, reason) when unreachable."""
        try:
            with urllib.request.urlopen(self.web + path, timeout=timeout_s) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, None
        except (OSError, ValueError) as exc:
            return 0, str(exc)

    def log_lines(self, *needles: str) -> int:
        """Lines of the current log containing any of `needles`."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines() if any(n in line for n in needles))
