"""The CLI failures that need a broker to show: `tail` that matches nothing or finds no topic
says so and exits 1; `replay` of a file with a bad line sends nothing at all."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_tail_says_when_nothing_matched_and_stops_at_the_end(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    kafka_bootstrap: str,
    run_cli: Run,
) -> None:
    settings = settings_factory()
    alerts = topic_factory("anomaly-alerts", partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n, device in enumerate(["d1", "d2", "d1"]):
        alert = {"alert_id": f"{device}:{n}", "device_id": device, "severity": "warning"}
        producer.send(alerts, key=device.encode(), value=json.dumps(alert).encode())
    producer.flush()
    producer.close()

    nothing = run_cli(settings, "tail", "alerts", "--from-beginning", "--until-end",
                      "-d", "no-such-device", timeout=60)  # fmt: skip
    assert nothing.returncode == 1, nothing.stderr
    assert nothing.stdout == ""
    ready, error = _lines(nothing.stderr)  # the status line, then the one error line
    assert ready == f"edgeml tail: following {alerts} from its beginning"
    assert error == (
        f"edgeml: error: no records matched device no-such-device in {alerts} "
        "(3 read up to its end)"
    )

    found = run_cli(settings, "tail", "alerts", "--from-beginning", "--until-end", "--json",
                    "-d", "d1", timeout=60)  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert sorted(json.loads(line)["alert_id"] for line in _lines(found.stdout)) == [
        "d1:0",
        "d1:2",
    ]

    live = run_cli(settings, "tail", "alerts", "-d", "d1", "--timeout", "1", timeout=60)
    assert live.returncode == 1, live.stderr
    assert re.fullmatch(
        rf"edgeml: error: no records matched device d1 in {alerts} \(0 read in \d+\.\d s\)",
        _lines(live.stderr)[-1],
    ), live.stderr


def test_tail_names_a_topic_that_does_not_exist(
    settings_factory: Callable[..., Settings], run_cli: Run
) -> None:
    settings = settings_factory()
    result = run_cli(settings, "tail", "dlq", "--timeout", "1", timeout=60)
    assert result.returncode == 1, result.stderr
    assert _lines(result.stderr) == [
        f"edgeml: error: topic {settings.topic('sensor-readings.dlq')} does not exist "
        f"(waited {_waited(result.stderr)} s)"
    ]


def _waited(stderr: str) -> str:
    match = re.search(r"waited (\d+\.\d) s", stderr)
    assert match, stderr
    return match.group(1)


def test_replay_checks_the_whole_file_before_it_sends(
    settings_factory: Callable[..., Settings],
    kafka_admin: Any,
    read_records: Callable[..., list[dict[str, Any]]],
    run_cli: Run,
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    good = [{"device_id": "d1", "ts": 1767225600 + n, "metrics": {"temp": 20.0 + n}}
            for n in range(3)]  # fmt: skip
    bad = tmp_path / "bad-last-line.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"device_id": "d1", "ts":\n')

    refused = run_cli(settings, "replay", str(bad), "--no-progress", timeout=120)
    assert refused.returncode == 2, refused.stderr
    (line,) = _lines(refused.stderr)
    assert "Invalid value for PATH: bad-last-line.jsonl:4: not JSON" in line, line
    # nothing sent: the readings topic was not even created for this prefix
    assert settings.topic("sensor-readings") not in set(kafka_admin.list_topics())

    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("".join(json.dumps(r) + "\n" for r in good))
    sent = run_cli(settings, "replay", str(fixed), "--no-progress", timeout=120)
    assert sent.returncode == 0, sent.stderr
    readings = read_records(settings, "sensor-readings")
    assert [(r["seq"], r["metrics"]["temp"]) for r in readings] == [(0, 20.0), (1, 21.0), (2, 22.0)]
