"""A worker killed with SIGKILL mid-run and replaced by one on a fresh disk (RocksDB store, state
recovered from the changelog): nothing is left without a prediction; duplicates from the
redelivered batch are counted and reported by `evaluate`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration


def test_sigkill_mid_run_loses_no_prediction(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    read_records: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    settings = settings_factory(store="rocksdb://", data_dir=tmp_path / "data")
    first = worker_factory(settings)
    truth = tmp_path / "truth.jsonl"
    sim = run_cli(
        settings, "simulate", "--devices", "10", "--count", "2000", "--seed", "17",
        "--rate", "0", "--ground-truth", str(truth), "--no-progress",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    deadline = time.monotonic() + 120
    while len(read_records(settings, "predictions", idle_ms=500)) < 2_000:
        assert time.monotonic() < deadline, "the first worker produced too little"
    first.kill()  # SIGKILL: no flush, no commit, no goodbye
    first.wait()
    assert first.returncode == -9

    # The replacement also lost its disk: its state comes back from the changelog alone.
    worker_factory(settings.model_copy(update={"data_dir": tmp_path / "fresh-disk"}))
    # The restarted worker redoes everything after the last committed offset; wait until it has
    # caught up (no new predictions for a while) so evaluate sees every duplicate it wrote.
    counts = [-1, len(read_records(settings, "predictions"))]
    while counts[-1] != counts[-2] or counts[-1] < 20_000:
        assert time.monotonic() < deadline + 180, f"no steady state: {counts}"
        time.sleep(3)
        counts.append(len(read_records(settings, "predictions")))
    evaluation = run_cli(
        settings, "evaluate", "--ground-truth", str(truth), "--json", "--timeout", "180"
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert report["readings"] == 20_000
    assert report["missing"] == 0
    assert report["predictions"] == 20_000 + report["duplicates"]
    predictions = read_records(settings, "predictions")
    assert len(predictions) == report["predictions"]
