"""`edgeml simulate`, `evaluate` and `replay` end to end against the session broker, run
in-process through the console entry (`invoke_cli`), so no worker is needed: the test reads
what the commands wrote and plants the outputs a worker would have written.

What is pinned: `simulate` sends every reading once (batched as asked, malformed messages mixed
in) and publishes its ground truth to the file and the topic; `evaluate` counts only records of
the run (by Kafka timestamp, by device, and dead letters by origin topic) and reports missing
and duplicate predictions; `replay` numbers each device's rows from 0 and skips bad rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from edgeml.app.kafka_admin import ensure_topics, publish
from edgeml.app.settings import Settings
from edgeml.sim.malformed import MALFORMED_SEQ_BASE
from edgeml.sim.truth import GroundTruth
from edgeml.topics.catalog import ALL_TOPICS, MODEL_REGISTRY

pytestmark = pytest.mark.integration

Invoke = Callable[..., tuple[int, str, str]]


def _messages(settings: Settings, name: str, idle_ms: int = 3000) -> list[Any]:
    """Every record on one of the platform's topics so far (kafka-python `ConsumerRecord`s)."""
    consumer = KafkaConsumer(
        settings.topic(name),
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def _object(value: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(value)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _readings(values: list[bytes]) -> list[dict[str, Any]]:
    """The well-formed readings in `values` (single or `{"readings": [...]}` envelopes); the
    malformed messages `simulate --malformed` mixes in are left out by their seq range."""
    found: list[dict[str, Any]] = []
    for value in values:
        decoded = _object(value)
        items = decoded.get("readings", [decoded]) if decoded else []
        found.extend(
            item
            for item in items
            if isinstance(item, dict)
            and isinstance(item.get("seq"), int)
            and item["seq"] < MALFORMED_SEQ_BASE
            and isinstance(item.get("device_id"), str)
        )
    return found


def _simulate(invoke_cli: Invoke, settings: Settings, truth_file: Path) -> GroundTruth:
    code, out, err = invoke_cli(
        settings, "simulate", "--devices", "3", "--count", "200", "--rate", "0", "--seed", "5",
        "--batch", "4", "--malformed", "6", "--warmup", "20", "--incident-every", "40",
        "--ground-truth", str(truth_file), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    truth = GroundTruth.read(truth_file)
    assert out.startswith(
        f"simulate: 600 readings from 3 devices, 6 malformed, {len(truth.incidents)} incidents, "
        f"{len(truth.failures)} failures, "
    ), out
    assert out.rstrip().endswith(f"; ground truth: {truth_file}")
    return truth


def test_simulate_sends_each_reading_once_and_publishes_its_ground_truth(
    settings_factory: Callable[..., Settings], invoke_cli: Invoke, tmp_path: Path
) -> None:
    settings = settings_factory()
    truth = _simulate(invoke_cli, settings, tmp_path / "truth.jsonl")

    assert truth.summary.readings_per_device == {d: 200 for d in truth.summary.readings_per_device}
    assert len(truth.summary.readings_per_device) == 3
    assert truth.summary.malformed == 6
    assert truth.summary.topic == settings.topic("sensor-readings")
    assert truth.incidents, "seed 5 with faults every ~40 s must label some incidents"

    sent = _messages(settings, "sensor-readings")
    readings = _readings([m.value for m in sent])
    pairs = Counter((r["device_id"], r["seq"]) for r in readings)
    assert pairs == Counter(
        {(d, s): 1 for d in truth.summary.readings_per_device for s in range(200)}
    )
    envelopes = [
        (m.key, batch["readings"]) for m in sent if "readings" in (batch := _object(m.value))
    ]
    assert sum(len(batch) for _, batch in envelopes) == 600  # every reading came in an envelope
    assert max(len(batch) for _, batch in envelopes) == 4
    for key, batch in envelopes:  # one device per envelope, and the key says which
        assert {r["device_id"].encode() for r in batch} == {key}

    published = [json.loads(m.value) for m in _messages(settings, "ground-truth")]
    assert sorted(published, key=lambda line: line.get("incident_id", "")) == sorted(
        (json.loads(line) for line in truth.lines()), key=lambda line: line.get("incident_id", "")
    )


def test_evaluate_counts_only_the_runs_own_outputs(
    settings_factory: Callable[..., Settings],
    invoke_cli: Invoke,
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    truth_file = tmp_path / "truth.jsonl"
    truth = _simulate(invoke_cli, settings, truth_file)
    devices = sorted(truth.summary.readings_per_device)
    before_run_ms = int(truth.summary.run_started_at * 1000) - 60_000

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    try:
        for device in devices:  # what a worker writes: envelopes, one per device here
            predictions = [
                {"device_id": device, "seq": s, "ts": 0.0, "failure_prob": 0.0}
                for s in range(200)
                if (device, s) != (devices[0], 0)  # one reading left without a prediction
            ]
            if device == devices[1]:
                predictions.append(predictions[1])  # one prediction twice
            producer.send(
                settings.topic("predictions"),
                key=device.encode(),
                value=json.dumps({"predictions": predictions}).encode(),
            )
        foreign = {"device_id": "not-in-this-run", "seq": 0, "ts": 0.0}
        producer.send(settings.topic("predictions"), value=json.dumps(foreign).encode())
        stale = {"device_id": devices[0], "seq": 0, "ts": 0.0}  # produced before the run
        producer.send(
            settings.topic("predictions"),
            value=json.dumps(stale).encode(),
            timestamp_ms=before_run_ms,
        )
        for incident in truth.incidents:  # an `open` alert inside every incident window
            alert = {"device_id": incident.device_id, "ts": incident.start_ts, "state": "open"}
            producer.send(settings.topic("anomaly-alerts"), value=json.dumps(alert).encode())
        outside = {"device_id": "not-in-this-run", "ts": 0.0, "state": "open"}
        producer.send(settings.topic("anomaly-alerts"), value=json.dumps(outside).encode())
        origin = truth.summary.topic.encode()
        for error_class, topic in [
            ("InvalidJson", origin),
            ("InvalidJson", origin),
            ("Oversize", origin),
            ("InvalidJson", b"someone-elses-readings"),
        ]:
            producer.send(
                settings.topic("sensor-readings.dlq"),
                value=b"{",
                headers=[
                    ("edgeml.origin.topic", topic),
                    ("edgeml.error.class", error_class.encode()),
                ],
            )
        producer.flush()
    finally:
        producer.close()

    code, out, err = invoke_cli(settings, "evaluate", "-g", str(truth_file), "--json",
                                "--timeout", "0")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["readings"] == 600
    assert (report["predictions"], report["missing"], report["duplicates"]) == (600, 1, 1)
    assert report["unexpected"] == 0
    assert (report["incidents"], report["detected"]) == (len(truth.incidents),) * 2
    assert (report["alerts_open"], report["alert_precision"]) == (len(truth.incidents), 1.0)
    assert report["dlq_by_class"] == {"InvalidJson": 2, "Oversize": 1}
    assert (report["dlq"], report["dlq_expected"]) == (3, 6)

    code, out, err = invoke_cli(settings, "evaluate", "-g", str(truth_file), "--timeout", "0")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.splitlines() if line.count("│") == 3}  # fmt: skip
    assert rows["missing / duplicates / unexpected"] == "1 / 1 / 0"
    assert rows["incidents detected"] == f"{len(truth.incidents)} / {len(truth.incidents)}"
    assert rows["dead letters (expected)"] == "3 (6)"

    elsewhere = settings_factory(topic_prefix=f"{settings.topic_prefix}nothing-")
    code, out, err = invoke_cli(elsewhere, "evaluate", "-g", str(truth_file), "--json",
                                "--timeout", "0")  # fmt: skip
    assert code == 0, err
    empty = json.loads(out)
    assert (empty["predictions"], empty["missing"], empty["dlq"]) == (0, 600, 0)


def test_replay_numbers_each_devices_rows_and_skips_bad_ones(
    settings_factory: Callable[..., Settings], invoke_cli: Invoke, tmp_path: Path
) -> None:
    settings = settings_factory()
    history = tmp_path / "history.csv"
    history.write_text(
        "machine,when,temp,vibration,note\n"
        "m1,2026-01-01T00:00:00Z,21.5,0.1,ok\n"
        "m2,2026-01-01T00:00:01Z,30.0,0.2,ok\n"
        "m1,2026-01-01T00:00:02Z,21.7,,ok\n"  # one metric empty: the reading keeps the other
        "m1,garbage,21.9,0.1,ok\n"  # skipped: bad timestamp
        ",2026-01-01T00:00:03Z,1.0,0.1,ok\n"  # skipped: no device id
        "m2,2026-01-01T00:00:04Z,x,y,ok\n"  # skipped: no numeric metric
        "m2,1767225605,30.5,0.3,ok\n"
    )
    code, out, err = invoke_cli(
        settings, "replay", str(history), "--device-column", "machine", "--timestamp-column",
        "when", "--metric-columns", "temp,vibration", "--site", "plant-7", "--batch", "2",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(
        "replay: 4 readings from 2 devices in 1 file, 2 messages; 7 rows, 3 skipped (bad "
        "timestamp: 1, no device id: 1, no numeric metric: 1); "
    ), out
    assert err.splitlines() == [  # file:line, the header being line 1
        "  skipped history.csv:5: bad timestamp",
        "  skipped history.csv:6: no device id",
        "  skipped history.csv:7: no numeric metric",
    ]
    readings = _readings([m.value for m in _messages(settings, "sensor-readings")])
    by_device: dict[str, list[tuple[int, float, dict[str, float]]]] = {}
    for r in readings:
        assert r["site"] == "plant-7"
        by_device.setdefault(r["device_id"], []).append((r["seq"], r["ts"], r["metrics"]))
    assert {d: sorted(rows) for d, rows in by_device.items()} == {
        "m1": [
            (0, 1_767_225_600.0, {"temp": 21.5, "vibration": 0.1}),
            (1, 1_767_225_602.0, {"temp": 21.7}),
        ],
        "m2": [
            (0, 1_767_225_601.0, {"temp": 30.0, "vibration": 0.2}),
            (1, 1_767_225_605.0, {"temp": 30.5, "vibration": 0.3}),
        ],
    }


def test_ensure_topics_creates_only_what_is_missing_and_publish_waits_for_the_ack(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    created = ensure_topics(settings)
    assert sorted(created) == sorted(settings.topic(spec.name) for spec in ALL_TOPICS)
    assert ensure_topics(settings) == []

    registry_topic = settings.topic(MODEL_REGISTRY.name)
    publish(settings, registry_topic, b"failure-gbm", b'{"version": 3}')
    (record,) = _messages(settings, MODEL_REGISTRY.name)
    assert (record.key, record.value) == (b"failure-gbm", b'{"version": 3}')
