"""The sensor pipeline end to end: simulator → real broker → worker → predictions, alerts, DLQ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from app.settings import Settings
from sim.malformed import ERROR_CLASS, MALFORMED_KINDS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env |= {
        "EDGEML_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "EDGEML_TOPIC_PREFIX": settings.topic_prefix,
        "EDGEML_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _dead_letters(settings: Settings) -> list[dict[str, str]]:
    consumer = KafkaConsumer(
        settings.topic("sensor-readings.dlq"),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        enable_auto_commit=False,
    )
    letters = [{name: value.decode() for name, value in message.headers} for message in consumer]
    consumer.close()
    return letters


def test_every_valid_reading_gets_one_prediction_and_every_malformed_one_a_dead_letter(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    settings = settings_factory(topic_partitions=4)
    truth = tmp_path / "truth.jsonl"
    worker = worker_factory(settings)

    sim = _cli(
        settings, "simulate", "--devices", "20", "--count", "5000", "--seed", "101",
        "--rate", "0", "--malformed", "500", "--ground-truth", str(truth), "--no-progress",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    evaluation = _cli(
        settings, "evaluate", "--ground-truth", str(truth), "--json", "--timeout", "240"
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)

    assert report["readings"] == 100_000
    assert report["missing"] == 0
    assert report["duplicates"] == 0
    assert report["predictions_per_reading"] == 1.0
    assert report["dlq"] == 500
    assert worker.poll() is None, "the worker died"

    letters = _dead_letters(settings)
    assert len(letters) == 500
    by_class = Counter(letter["edgeml.error.class"] for letter in letters)
    assert set(by_class) == {ERROR_CLASS[kind] for kind in MALFORMED_KINDS}
    assert all(letter["edgeml.error.reason"] for letter in letters)
    assert all(
        letter["edgeml.origin.topic"] == settings.topic("sensor-readings") for letter in letters
    )
    assert len({letter["edgeml.origin.offset"] + letter["edgeml.origin.partition"]
                for letter in letters}) == 500  # fmt: skip
