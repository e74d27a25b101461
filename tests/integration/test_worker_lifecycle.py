"""Worker lifecycle against a real broker (issue #9, items 3 and 6): a crashed agent stops the
worker with a non-zero status, SIGTERM stops a worker whose batch never finishes, and a worker
restarted after kill -9 takes its partitions back as the same static group member.

Faults are injected by running the real CLI (`app.cli.main`, `edgeml worker`) from a small
script that patches the scoring pipeline or the publisher first; no test hook lives in the
product code. Durations are printed (run with `-s`), never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.lifecycle import EXIT_AGENT_CRASHED, EXIT_STOP_TIMEOUT
from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READY = "Worker]: Ready"
HANG_GUARD_S = 120.0  # only so that a broken build fails instead of hanging the suite

_CRASH_ON_MARKER = """
import edgeml.models.pipeline as pipeline
_process = pipeline.ReadingPipeline.process
def process(self, inbound, store):
    if any(b"CRASH-ME" in (item.value or b"") for item in inbound):
        raise RuntimeError("injected scoring crash")
    return _process(self, inbound, store)
pipeline.ReadingPipeline.process = process
"""

_HANG_ON_MARKER = """
import asyncio
import edgeml.agents.publish as publish
import edgeml.models.pipeline as pipeline
_process, _publish, hang = pipeline.ReadingPipeline.process, publish.Publisher.publish, [False]
def process(self, inbound, store):
    hang[0] = any(b"HANG-ME" in (item.value or b"") for item in inbound)
    return _process(self, inbound, store)
async def publish_(self, records):
    if hang[0]:
        await asyncio.sleep(10**6)  # a send that never completes
    await _publish(self, records)
pipeline.ReadingPipeline.process = process
publish.Publisher.publish = publish_
"""

_RUN_WORKER = """
import sys
from edgeml.app.cli import main
sys.argv = ["edgeml", "worker", "--loglevel", "info"]
main()
"""


def _env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings()` equal to `settings` (as tests/conftest.py's
    worker helpers build it), with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    for name, value in settings.model_dump(mode="json").items():
        if getattr(settings, name) is None:
            continue
        env[f"EDGEML_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture
def patched_worker(tmp_path: Path) -> Iterator[Callable[[Settings, str], subprocess.Popen[bytes]]]:
    """`start(settings, patch) -> Popen` once the worker is ready: `edgeml worker` with `patch`
    (Python source) run first. Killed after the test if still running."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, patch: str) -> subprocess.Popen[bytes]:
        script = tmp_path / f"worker-{len(started) + 1}.py"
        script.write_text(patch + _RUN_WORKER)
        log = script.with_suffix(".log")
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, str(script)], cwd=ROOT, env=_env(settings),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        started.append(worker)
        deadline = time.monotonic() + HANG_GUARD_S
        while READY not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker not ready; end of its log:\n{_tail(log)}", pytrace=False)
            time.sleep(0.2)
        return worker

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _send(settings: Settings, *values: bytes) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    try:
        for value in values:
            producer.send(settings.topic("sensor-readings"), key=b"dev-1", value=value)
        producer.flush(30)
    finally:
        producer.close()


def _wait_exit(worker: subprocess.Popen[bytes], log: Path) -> float:
    began = time.monotonic()
    try:
        worker.wait(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running; end of its log:\n{_tail(log)}", pytrace=False)
    return time.monotonic() - began


def test_crashed_scoring_agent_stops_the_worker_with_status_1(
    settings_factory: Callable[..., Settings],
    patched_worker: Callable[[Settings, str], subprocess.Popen[bytes]],
    read_records: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    worker = patched_worker(settings, _CRASH_ON_MARKER)
    reading = {"device_id": "dev-1", "ts": time.time(), "seq": 1, "metrics": {"t": 1.0}}
    _send(settings, json.dumps(reading).encode(), b'{"CRASH-ME": 1}')
    seconds = _wait_exit(worker, tmp_path / "worker-1.log")
    print(f"\ncrashed agent: worker exited {seconds:.1f} s after the message was sent")
    log = (tmp_path / "worker-1.log").read_text(errors="replace")
    assert worker.returncode == EXIT_AGENT_CRASHED, _tail(tmp_path / "worker-1.log")
    assert "agent score_readings crashed: RuntimeError('injected scoring crash')" in log
    assert "Restarting dead" not in log  # Faust's default supervisor would have restarted it

    # The crashed batch was not committed: the same worker without the fault gets it again.
    patched_worker(settings, "")
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        dead = read_records(settings, "sensor-readings.dlq", idle_ms=2000)
        predicted = read_records(settings, "predictions", idle_ms=500)
        if {"CRASH-ME": 1} in dead and any(p.get("seq") == 1 for p in predicted):
            break
        assert time.monotonic() < deadline, f"crashed batch not re-delivered: {dead} {predicted}"


def test_sigterm_stops_a_worker_whose_batch_never_finishes(
    settings_factory: Callable[..., Settings],
    patched_worker: Callable[[Settings, str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    worker = patched_worker(settings, _HANG_ON_MARKER)
    _send(settings, b'{"HANG-ME": 1}')
    log = tmp_path / "worker-1.log"
    time.sleep(2)  # let the batch reach the send that never completes
    worker.send_signal(signal.SIGTERM)
    seconds = _wait_exit(worker, log)
    print(f"\nstuck batch: SIGTERM -> exit in {seconds:.1f} s (status {worker.returncode})")
    # Faust waits for the stuck batch ("Wait for streams...") until the watchdog ends it.
    assert worker.returncode == EXIT_STOP_TIMEOUT, _tail(log)
    assert "stop on SIGTERM: not stopped after" in log.read_text(errors="replace")


def _end_offsets(consumer: Any, topic: str) -> int:
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic) or set()
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    return int(sum(ends.values()))


def test_worker_restarted_after_kill_9_resumes_as_the_same_static_member(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    unique_id: str,
) -> None:
    from kafka import KafkaConsumer

    settings = settings_factory(worker_name=f"{unique_id}-w1")
    first = worker_factory(settings)
    sim = subprocess.Popen(  # a steady stream across the kill and the restart
        [sys.executable, "-m", "edgeml.app", "simulate", "--devices", "5", "--count", "3000",
         "--rate", "100", "--seed", "3", "--no-progress"],
        cwd=ROOT, env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    predictions = settings.topic("predictions")
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while _end_offsets(consumer, predictions) < 50:
            assert time.monotonic() < deadline, "the first worker produced no predictions"
            time.sleep(0.5)
        first.kill()  # SIGKILL: no LeaveGroup, no commit
        killed_at = time.monotonic()
        first.wait()
        assert first.returncode == -signal.SIGKILL
        before = _end_offsets(consumer, predictions)

        worker_factory(settings)  # same worker name: the same group.instance.id
        ready_s = time.monotonic() - killed_at
        while _end_offsets(consumer, predictions) <= before:
            assert time.monotonic() < killed_at + HANG_GUARD_S, "the restart never resumed"
            time.sleep(0.2)
        resumed_s = time.monotonic() - killed_at
    finally:
        consumer.close()
        sim.terminate()
        sim.wait()
    print(
        f"\nkill -9 -> restarted worker ready after {ready_s:.1f} s, "
        f"first new prediction after {resumed_s:.1f} s "
        f"(session timeout {settings.session_timeout_s:.0f} s, static member "
        f"{settings.group_instance_id()})"
    )
