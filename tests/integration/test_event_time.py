"""Event-time correctness: a file replayed at full speed yields the same predictions as the same
readings produced paced in (accelerated) real time, with different batching on the way."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edgeml.app.settings import Settings
from edgeml.sim.generator import SimConfig, simulate

pytestmark = pytest.mark.integration

DEVICES, COUNT = 4, 400


def _by_reading(records: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[Any, ...]]:
    return {
        (p["device_id"], p["seq"]): (p["ts"], p["anomaly_score"], p["failure_prob"],
                                     p["is_anomaly"], p["late"])
        for p in records
    }  # fmt: skip


def test_replay_at_full_speed_equals_paced_replay(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    read_records: Callable[..., list[dict[str, Any]]],
    unique_id: str,
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.jsonl"
    sim = simulate(SimConfig(devices=DEVICES, count=COUNT, seed=23, incident_every=120, warmup=60))
    with history.open("wb") as out:
        for reading in sim.readings():
            out.write(orjson.dumps(reading.to_wire()) + b"\n")

    fast = settings_factory(app_id=f"{unique_id}-fast", topic_prefix=f"{unique_id}-fast-")
    paced = settings_factory(app_id=f"{unique_id}-paced", topic_prefix=f"{unique_id}-paced-")
    worker_factory(fast)
    worker_factory(paced)
    # 400 s of event time at 40x: about 10 s, readings arriving one by one in small batches.
    for settings, speed in ((fast, "0"), (paced, "40")):
        replay = run_cli(settings, "replay", str(history), "--speed", speed, "--no-progress")
        assert replay.returncode == 0, replay.stderr

    expected = DEVICES * COUNT
    results = []
    for settings in (fast, paced):
        for _ in range(60):
            predictions = _by_reading(read_records(settings, "predictions", idle_ms=1000))
            if len(predictions) >= expected:
                break
        results.append(predictions)
    assert len(results[0]) == len(results[1]) == expected
    assert results[0] == results[1]
    assert any(anomalous for _, _, _, anomalous, _ in results[0].values())
