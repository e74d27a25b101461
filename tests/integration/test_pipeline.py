"""The sensor pipeline end to end: simulator → real broker → worker → predictions, alerts, DLQ."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from edgeml.app.settings import Settings
from edgeml.sim.malformed import ERROR_CLASS, MALFORMED_KINDS

pytestmark = pytest.mark.integration


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
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    settings = settings_factory(topic_partitions=4)
    truth = tmp_path / "truth.jsonl"
    worker = worker_factory(settings)

    sim = run_cli(
        settings, "simulate", "--devices", "20", "--count", "5000", "--seed", "101",
        "--rate", "0", "--malformed", "500", "--ground-truth", str(truth), "--no-progress",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    evaluation = run_cli(
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
