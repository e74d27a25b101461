"""The Scorer's timing hook (`on_model_call`) and its construction without disk I/O."""

from __future__ import annotations

import builtins
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeml.models.registry import FAILURE_MODEL_ID, ModelHandle, load_promoted
from edgeml.models.scoring import ANOMALY_MODEL_REF, Scorer
from edgeml.models.shipped import SHIPPED_ROOT
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import SensorReading


class FakeFailureModel:
    """A failure model that answers 0.25 and counts its calls; `fail` makes it raise."""

    def __init__(self, fail: bool = False) -> None:
        self.ref = "fake-failure@7"
        self.calls = 0
        self.fail = fail

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("model down")
        return np.full(len(features), 0.25)


def batch_of(scorer: Scorer, devices: int = 3) -> list[tuple[Any, list[SensorReading]]]:
    sim = simulate(SimConfig(devices=devices, count=20, seed=11))
    groups: dict[str, list[SensorReading]] = defaultdict(list)
    for reading in sim.readings():
        groups[reading.device_id].append(reading)
    return [(scorer.new_state(device), readings) for device, readings in groups.items()]


def test_each_batch_reports_one_failure_call_and_the_rest_as_the_anomaly_model() -> None:
    calls: list[tuple[str, float]] = []
    model = FakeFailureModel()
    scorer = Scorer(failure_model=model, on_model_call=lambda ref, s: calls.append((ref, s)))
    results = scorer.score_many(batch_of(scorer))
    assert model.calls == 1 and all(r.failure_prob == 0.25 for res in results for r in res)
    assert [ref for ref, _ in calls] == ["fake-failure@7", ANOMALY_MODEL_REF]
    assert all(seconds >= 0.0 for _, seconds in calls)
    assert calls[0][1] > 0.0  # the failure call itself was timed
    scorer.score_many([])
    assert len(calls) == 2  # an empty batch calls no model and reports nothing


def test_score_reports_its_failure_call() -> None:
    calls: list[str] = []
    scorer = Scorer(failure_model=FakeFailureModel(), on_model_call=lambda r, s: calls.append(r))
    (state, readings), *_ = batch_of(scorer, devices=1)
    scorer.score(state, readings)
    assert calls == ["fake-failure@7"]  # `score` has no batch-level anomaly timing


def test_a_failing_model_call_is_still_reported() -> None:
    calls: list[str] = []
    scorer = Scorer(
        failure_model=FakeFailureModel(fail=True), on_model_call=lambda r, s: calls.append(r)
    )
    with pytest.raises(RuntimeError, match="model down"):
        scorer.score_many(batch_of(scorer))
    assert calls == ["fake-failure@7"]


def test_without_a_hook_scores_are_the_same() -> None:
    timed = Scorer(failure_model=FakeFailureModel(), on_model_call=lambda r, s: None)
    plain = Scorer(failure_model=FakeFailureModel())
    a = [[o.anomaly_score for o in res] for res in timed.score_many(batch_of(timed))]
    b = [[o.anomaly_score for o in res] for res in plain.score_many(batch_of(plain))]
    assert a == b and plain.on_model_call is None


def test_a_scorer_is_built_without_touching_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"disk I/O in a constructor: {args!r}")

    for name in ("is_dir", "is_file", "iterdir", "read_text", "read_bytes", "exists"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr(builtins, "open", refuse)
    scorer = Scorer()  # the shipped registry has a promoted model: none is loaded implicitly
    monkeypatch.undo()
    assert scorer.failure_model is None
    assert set(scorer.model_ids) == {"anomaly", "failure_online"}


def test_load_promoted_is_the_explicit_way(tmp_path: Path) -> None:
    assert load_promoted(tmp_path / "nothing-here") is None
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED_ROOT, root)
    handle = load_promoted(root, threads=2)
    assert isinstance(handle, ModelHandle) and handle.ref.startswith(f"{FAILURE_MODEL_ID}@")
    assert handle.current.session.get_session_options().intra_op_num_threads == 2
    (root / FAILURE_MODEL_ID / "PROMOTED").unlink()
    assert load_promoted(root) is None  # registered but nothing promoted
