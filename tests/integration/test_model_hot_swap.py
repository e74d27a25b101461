"""A new model version promoted while the pipeline runs: predictions switch with no gap."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.settings import Settings
from edgeml.models.registry import ModelRegistry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    return env | {
        "EDGEML_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "EDGEML_TOPIC_PREFIX": settings.topic_prefix,
        "EDGEML_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "EDGEML_REGISTRY_ROOT": str(settings.registry_root),
    }


def _app(settings: Settings, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeml.app", *args],
        cwd=ROOT,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_promoting_a_version_switches_predictions_without_a_gap(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    read_records: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    registry_root = tmp_path / "registry"
    shutil.copytree(ROOT / "models" / "artifacts", registry_root)
    registry = ModelRegistry(registry_root)
    current = registry.manifest("failure-gbm")
    folder = registry_root / "failure-gbm" / current.version
    candidate = registry.register(
        "failure-gbm",
        folder / current.file,
        kind="onnx",
        inputs=current.inputs,
        training_data="the same model, re-registered to exercise the hot swap",
        metrics=dict(current.metrics),
        parent_version=current.version,
        measure_latency=False,
    )
    assert registry.promoted_version("failure-gbm") == current.version

    settings = settings_factory(registry_root=registry_root)
    worker = worker_factory(settings)
    truth = tmp_path / "truth.jsonl"
    # 5 devices x 600 readings at 200 readings/s: about 15 s of traffic; promote in the middle.
    simulator = _app(
        settings, "simulate", "--devices", "5", "--count", "600", "--rate", "200", "--seed", "3",
        "--ground-truth", str(truth), "--no-progress",
    )  # fmt: skip
    time.sleep(6)
    promote = run_cli(
        settings,
        "models",
        "promote",
        "failure-gbm",
        candidate.version,
        "--root",
        str(registry_root),
    )
    assert promote.returncode == 0, promote.stderr
    _, sim_err = simulator.communicate(timeout=120)
    assert simulator.returncode == 0, sim_err

    evaluation = run_cli(
        settings, "evaluate", "--ground-truth", str(truth), "--json", "--timeout", "60"
    )
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert (report["readings"], report["missing"], report["duplicates"]) == (3000, 0, 0)
    assert worker.poll() is None

    by_device: dict[str, list[tuple[int, str]]] = {}
    for prediction in read_records(settings, "predictions"):
        by_device.setdefault(prediction["device_id"], []).append(
            (prediction["seq"], prediction["models"]["failure"])
        )
    old, new = current.ref, candidate.ref
    for device, seen in by_device.items():
        refs = [ref for _, ref in sorted(seen)]
        assert set(refs) <= {old, new}, device
        switch = refs.index(new)  # raises if this device never saw the new version
        assert switch > 0, f"{device} never scored with the old version"
        assert refs[switch:] == [new] * (len(refs) - switch), f"{device} switched back"
