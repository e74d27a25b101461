"""`edgeml tail` against a real broker: replay with filters, live records, dead letters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    return env | {
        "EDGEML_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "EDGEML_TOPIC_PREFIX": settings.topic_prefix,
    }


def _tail(settings: Settings, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "edgeml.app", "tail", *args, "--json", "--timeout", "30"],
        cwd=ROOT, env=_env(settings), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _alert(device: str, severity: str, n: int) -> bytes:
    return json.dumps({"alert_id": f"{device}:{n}", "device_id": device, "state": "open",
                       "severity": severity, "ts": 1767225600.0 + n, "score": 0.9,
                       "threshold": 0.5, "drivers": []}).encode()  # fmt: skip


def test_tail_replays_with_filters_and_follows_live_records(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    kafka_bootstrap: str,
) -> None:
    settings = settings_factory()
    alerts = topic_factory("anomaly-alerts", partitions=2)
    dlq = topic_factory("sensor-readings.dlq")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n, (device, severity) in enumerate(
        [("d1", "info"), ("d2", "critical"), ("d1", "warning"), ("d3", "warning")]
    ):
        producer.send(alerts, key=device.encode(), value=_alert(device, severity, n))
    producer.send(dlq, key=b"d1", value=b"{broken", headers=[
        ("edgeml.origin.topic", b"sensor-readings"), ("edgeml.origin.partition", b"0"),
        ("edgeml.origin.offset", b"41"), ("edgeml.error.class", b"InvalidJson"),
        ("edgeml.error.reason", b"unexpected end of data"),
    ])  # fmt: skip
    producer.flush()

    replayed = _tail(settings, "alerts", "--from-beginning", "--severity", "warning",
                     "-d", "d1", "-d", "d2", "--limit", "2")  # fmt: skip
    assert sorted(a["alert_id"] for a in replayed) == ["d1:2", "d2:1"]
    (letter,) = _tail(settings, "dlq", "--from-beginning", "--limit", "1")
    assert letter["error.class"] == "InvalidJson" and letter["original"] == "{broken"
    assert letter["origin.offset"] == "41"

    live = subprocess.Popen(
        [sys.executable, "-m", "edgeml.app", "tail", "alerts", "--json", "-d", "d9", "--limit", "1",
         "--timeout", "60"],
        cwd=ROOT, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert live.stderr is not None and live.stdout is not None
        ready = live.stderr.readline()  # printed once it holds every partition at the end
        assert "following" in ready and alerts in ready, ready
        producer.send(alerts, key=b"d8", value=_alert("d8", "critical", 10))
        producer.send(alerts, key=b"d9", value=_alert("d9", "info", 11))
        producer.flush()
        started = time.monotonic()
        assert live.wait(timeout=60) == 0
        lines = live.stdout.read().splitlines()
        assert [json.loads(line)["alert_id"] for line in lines] == ["d9:11"]
        assert time.monotonic() - started < 30
    finally:
        if live.poll() is None:
            live.kill()
        producer.close()
