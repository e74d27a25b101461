"""Model updates on the edge without a broker (`edge.updates`): a signed bundle is verified,
staged, checked on its golden set and swapped in; unsigned, badly signed, tampered, malformed and
golden-failing ones are refused, counted, and leave nothing in the device's registry; a model that
fails its health window (raises, answers NaN, drifts) is rolled back and never taken again, and
every row is scored during the window; a kept one is what a restarted agent serves."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import orjson
import pytest

from edgeml.edge.agent import EdgeAgent
from edgeml.edge.bundle import pack
from edgeml.edge.db import connect
from edgeml.edge.metrics import EdgeMetrics, render
from edgeml.edge.outbox import Outbox, OutboxLimits
from edgeml.edge.settings import EdgeSettings
from edgeml.edge.signing import generate_keypair, sign_version
from edgeml.edge.updates import ModelRefused, ModelSlot, ModelUpdater
from edgeml.models.manifest import ModelAnnouncement, ModelManifest
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry
from tests.unit.edge.model_versions import (
    bundle_of,
    constant_version,
    copy_version,
    golden_rows,
    seed,
    signed,
)

KEYS = generate_keypair()
OTHER_KEYS = generate_keypair()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return seed(tmp_path / "cloud")


@pytest.fixture
def updater(tmp_path: Path, root: Path) -> ModelUpdater:
    base = ModelRegistry(root).load(FAILURE_MODEL_ID)
    conn = connect(tmp_path / "edge.db")
    return ModelUpdater(
        ModelSlot(base, 3), tmp_path / "store", KEYS[1], conn, EdgeMetrics(),
        inputs=base.manifest.inputs, window_batches=3,
    )  # fmt: skip


def _announcement(version_dir: Path) -> ModelAnnouncement:
    return ModelAnnouncement.of(
        ModelManifest.from_json((version_dir / "manifest.json").read_text())
    )


def _features(rows: int = 40) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, 29)).astype(np.float32)


def _batches(updater: ModelUpdater, n: int) -> list[np.ndarray]:
    """`n` scored 'batches' (one predict call each) with the verdict after each."""
    out = []
    for _ in range(n):
        scores = updater.slot.predict(_features())
        assert scores.shape == (40,) and np.all(np.isfinite(scores))  # every row scored
        out.append(scores)
        updater.after_batch()
    return out


def test_a_signed_update_is_swapped_in_watched_kept_and_served_after_a_restart(
    tmp_path: Path, root: Path, updater: ModelUpdater
) -> None:
    _batches(updater, 2)  # the baseline of the current model
    version = signed(copy_version(root, "3"), KEYS[0])
    announcement = _announcement(version)
    assert updater.wants(announcement)
    model = updater.stage(announcement, bundle_of(version))
    updater.begin(model)
    assert updater.slot.ref == "failure-gbm@3" and updater.busy
    _batches(updater, 3)
    assert not updater.busy and updater.slot.ref == "failure-gbm@3"
    assert (updater.metrics.model_swaps, updater.metrics.model_kept) == (1, 1)
    assert not updater.wants(announcement)  # served now
    store = ModelRegistry(tmp_path / "store")
    assert store.promoted_version(FAILURE_MODEL_ID) == "3"
    # a restarted agent (offline) starts from the kept version, its signature checked again
    public = tmp_path / "key.pub"
    public.write_bytes(KEYS[1])
    agent = EdgeAgent(
        EdgeSettings(db_path=tmp_path / "edge2.db", model_store=tmp_path / "store",
                     registry_root=root, model_public_key=public, web_port=0)
    )  # fmt: skip
    assert agent.model_version == "failure-gbm@3"
    reading = {"device_id": "d", "ts": 1_767_225_600.0, "seq": 0, "metrics": {"t": 1.0}}
    assert agent.runner.run([orjson.dumps(reading)]).result.readings == 1


def _unsigned(version: Path) -> None:
    (version / "manifest.json.sig").unlink()


def _other_key(version: Path) -> None:
    sign_version(version, OTHER_KEYS[0])


def _model_bytes_changed(version: Path) -> None:
    model = version / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")


def _golden_answers_wrong(version: Path) -> None:
    with np.load(version / "golden.npz") as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    arrays["score"] = arrays["score"] + 0.1
    np.savez(version / "golden.npz", X=arrays["X"], score=arrays["score"], atol=arrays["atol"])
    sign_version(version, KEYS[0])  # validly signed, but the model does not give these answers


def _no_golden(version: Path) -> None:
    (version / "golden.npz").unlink()
    sign_version(version, KEYS[0])


@pytest.mark.parametrize(
    ("spoil", "reason", "says"),
    [
        (_unsigned, "unsigned", "no manifest.json.sig"),
        (_other_key, "bad_signature", "bad signature"),
        (_model_bytes_changed, "tampered", "does not match its manifest sha256"),
        (_golden_answers_wrong, "golden", "differs from the golden answers"),
        (_no_golden, "invalid", "no golden set"),
    ],
)
def test_an_untrusted_or_broken_update_is_refused_counted_and_leaves_nothing(
    tmp_path: Path,
    root: Path,
    updater: ModelUpdater,
    caplog: pytest.LogCaptureFixture,
    spoil: object,
    reason: str,
    says: str,
) -> None:
    version = signed(copy_version(root, "3"), KEYS[0])
    spoil(version)  # type: ignore[operator]
    announcement = _announcement(version)
    with pytest.raises(ModelRefused) as refused:
        updater.stage(announcement, bundle_of(version))
    assert refused.value.reason == reason and says in str(refused.value)
    with caplog.at_level(logging.ERROR, logger="edgeml.edge"):
        updater.refused(announcement, refused.value)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"refusing model failure-gbm@3 ({reason}: ")
    assert line.endswith("still scoring with failure-gbm@2") and "\n" not in line
    assert updater.slot.ref == "failure-gbm@2" and not updater.busy
    assert list((tmp_path / "store" / FAILURE_MODEL_ID).iterdir()) == []  # nothing staged stays
    text = render(updater.metrics, _outbox(tmp_path), "a", "m")
    assert f'edgeml_edge_model_refused_total{{reason="{reason}"}} 1' in text
    assert updater.judged(announcement, bundle_of(version))  # not judged twice


def _outbox(tmp_path: Path) -> Outbox:
    return Outbox(connect(tmp_path / "metrics.db"), OutboxLimits(max_bytes=1 << 20))


def test_a_bundle_that_is_not_the_announced_version_is_refused(
    root: Path, updater: ModelUpdater
) -> None:
    v3 = signed(copy_version(root, "3"), KEYS[0])
    v4 = signed(copy_version(root, "4"), KEYS[0])
    with pytest.raises(ModelRefused, match="not the announced one") as refused:
        updater.stage(_announcement(v3), bundle_of(v4))
    assert refused.value.reason == "invalid"
    fake = ModelAnnouncement(FAILURE_MODEL_ID, "3", "0" * 64)  # another sha256 than signed
    with pytest.raises(ModelRefused, match="announced sha256") as refused:
        updater.stage(fake, bundle_of(v3))
    assert refused.value.reason == "tampered"
    for garbage in (b"not json", pack({"x.sh": b"rm -rf /"}, FAILURE_MODEL_ID, "3")):
        with pytest.raises(ModelRefused) as refused:
            updater.stage(_announcement(v3), garbage)
        assert refused.value.reason == "invalid"


def test_a_model_that_drifts_is_rolled_back_after_its_window_and_not_taken_again(
    tmp_path: Path, root: Path, updater: ModelUpdater, caplog: pytest.LogCaptureFixture
) -> None:
    before = _batches(updater, 3)
    version = signed(constant_version(root, "5", 0.97, tmp_path), KEYS[0])
    announcement = _announcement(version)
    model = updater.stage(announcement, bundle_of(version))  # it passes its own golden set
    assert np.allclose(model.predict(golden_rows(version)), 0.97)
    updater.begin(model)
    with caplog.at_level(logging.ERROR, logger="edgeml.edge"):
        during = _batches(updater, 3)
    assert all(np.allclose(s, 0.97) for s in during)  # served by the new model meanwhile
    assert updater.slot.ref == "failure-gbm@2" and not updater.busy
    assert updater.metrics.model_rollbacks == 1 and updater.metrics.model_kept == 0
    (line,) = [r.getMessage() for r in caplog.records]
    assert "failure-gbm@5 failed its health window (mean failure probability 0.970" in line
    assert line.endswith("rolled back to failure-gbm@2")
    assert not updater.wants(announcement)  # remembered in the database
    assert ModelRegistry(tmp_path / "store").promoted_version(FAILURE_MODEL_ID) is None
    after = _batches(updater, 1)
    assert np.array_equal(after[0], before[0])  # the old model again, the same answers


class _Broken:
    """A loaded model that raises, or answers NaN for some rows (manifest of the base)."""

    def __init__(self, base: object, mode: str) -> None:
        self.manifest = base.manifest  # type: ignore[attr-defined]
        self.path = Path("/nonexistent")
        self.mode = mode

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.mode == "raise":
            raise RuntimeError("onnxruntime: bad node")
        out = np.full(len(features), 0.1)
        out[::7] = np.nan
        return out


@pytest.mark.parametrize(("mode", "says"), [("raise", "RuntimeError"), ("nan", "non-finite")])
def test_failed_rows_are_scored_by_the_previous_model_and_roll_back_at_once(
    updater: ModelUpdater, mode: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = updater.slot.current
    expected = base.predict(_features())
    updater.begin(_Broken(base, mode))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="edgeml.edge"):
        scores = updater.slot.predict(_features())
        updater.after_batch()
    assert np.all(np.isfinite(scores)) and len(scores) == 40  # no row left unscored
    if mode == "raise":
        assert np.array_equal(scores, expected)
    else:
        assert np.array_equal(scores[::7], expected[::7])  # the NaN rows: the previous model
        assert np.all(np.delete(scores, np.s_[::7]) == 0.1)  # the others: the new one
    assert updater.slot.ref == "failure-gbm@2" and updater.metrics.model_rollbacks == 1
    assert says in caplog.records[0].getMessage()


def test_the_agent_serves_through_a_slot_and_takes_updates_only_with_a_key(
    tmp_path: Path, root: Path
) -> None:
    settings = EdgeSettings(db_path=tmp_path / "a.db", registry_root=root, web_port=0)
    agent = EdgeAgent(settings)
    assert isinstance(agent.scorer.failure_model, ModelSlot) and agent.updater is None
    assert agent.model_version.startswith("failure-gbm@2")


def test_without_a_trusted_model_the_first_signed_update_becomes_the_failure_model(
    tmp_path: Path, root: Path
) -> None:
    public = tmp_path / "key.pub"
    public.write_bytes(KEYS[1])
    settings = EdgeSettings(
        db_path=tmp_path / "a.db", registry_root=root, model_public_key=public, web_port=0,
        model_health_batches=2,
    )  # fmt: skip
    agent = EdgeAgent(settings)  # the shipped model is unsigned: refused
    assert agent.metrics.models_refused == {"unsigned": 1}
    assert agent.scorer.failure_model is None and agent.updater is not None
    version = signed(copy_version(root, "3"), KEYS[0])
    announcement = _announcement(version)
    assert agent.updater.wants(announcement)
    agent.updater.begin(agent.updater.stage(announcement, bundle_of(version)))
    assert agent.scorer.failure_model is agent.slot
    for seq in range(2):
        reading = {"device_id": "d", "ts": 1_767_225_600.0 + seq, "seq": seq,
                   "metrics": {"temperature": 20.0, "humidity": 40.0, "pressure": 1000.0,
                               "vibration": 0.2}}  # fmt: skip
        agent.runner.run([orjson.dumps(reading)])
        agent.updater.after_batch()
    assert agent.metrics.model_kept == 1
    assert agent.model_version.startswith("failure-gbm@3")
