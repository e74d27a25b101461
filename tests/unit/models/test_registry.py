"""Registry: register/load round trips, hash and schema verification, promotion, hot swap."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from edgeml.models.manifest import (
    ModelAnnouncement,
    ModelManifest,
    RegistryError,
    SchemaMismatch,
    TamperedArtifact,
    UnknownModel,
    UnknownVersion,
)
from edgeml.models.optimize.export import export_checked, sklearn_scores
from edgeml.models.registry import LoadedModel, ModelHandle, ModelRegistry, SessionCache

FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def trained() -> tuple[LogisticRegression, np.ndarray, np.ndarray, bytes]:
    x, y = make_classification(600, len(FEATURES), random_state=7)
    x = x.astype(np.float32)
    est = LogisticRegression(max_iter=200).fit(x[:400], y[:400])
    return est, x[400:], y[400:], export_checked(est, x[:400])


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "artifacts", sessions=SessionCache())


def _register(
    registry: ModelRegistry, trained: tuple, tmp_path: Path, **kwargs: object
) -> ModelManifest:
    _est, x, y, model_bytes = trained
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(model_bytes)
    holdout = tmp_path / "holdout.npz"
    np.savez(holdout, X=x, y=y)
    options: dict = {"holdout": holdout, "promote": True, **kwargs}
    return registry.register(
        "failure-lr",
        artifact,
        kind="onnx",
        inputs=FEATURES,
        outputs=None,
        training_data="make_classification(600, 6, seed=7)",
        metrics={"auc": 0.9},
        **options,
    )


def test_register_load_round_trip(registry: ModelRegistry, trained: tuple, tmp_path: Path) -> None:
    manifest = _register(registry, trained, tmp_path)
    assert manifest.version == "1"
    assert manifest.outputs == ("label", "probabilities")
    assert manifest.latency is not None and manifest.latency.p50_us > 0
    assert manifest.created_at.endswith("+00:00")
    loaded = registry.load("failure-lr", expected_inputs=FEATURES)
    est, x, _, _ = trained
    np.testing.assert_allclose(loaded.predict(x), sklearn_scores(est, x), atol=1e-5)
    assert loaded.memory.file_bytes == manifest.size_bytes
    assert registry.manifests() == [manifest]
    on_disk = ModelManifest.from_json(
        (registry.version_dir("failure-lr", "1") / "manifest.json").read_text()
    )
    assert on_disk == manifest
    hx, hy = registry.holdout("failure-lr")
    assert hx.shape == (200, len(FEATURES)) and hy.shape == (200,)


def test_sessions_are_shared_per_sha(
    registry: ModelRegistry, trained: tuple, tmp_path: Path
) -> None:
    _register(registry, trained, tmp_path)
    first = registry.load("failure-lr")
    second = registry.load("failure-lr", "1")
    assert first.session is second.session
    assert registry.sessions.created == 1


def test_tampered_artifact_is_refused(
    registry: ModelRegistry, trained: tuple, tmp_path: Path
) -> None:
    _register(registry, trained, tmp_path)
    path = registry.version_dir("failure-lr", "1") / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifact, match="does not match its manifest sha256"):
        registry.load("failure-lr")
    with pytest.raises(TamperedArtifact):
        registry.promote("failure-lr", "1")


def test_compressed_artifact_round_trip_and_tamper(
    registry: ModelRegistry, trained: tuple, tmp_path: Path
) -> None:
    manifest = _register(registry, trained, tmp_path, compress=True)
    assert manifest.file == "model.onnx.zst" and manifest.content_sha256
    est, x, _, _ = trained
    loaded = registry.load("failure-lr")
    np.testing.assert_allclose(loaded.predict(x), sklearn_scores(est, x), atol=1e-5)
    (registry.version_dir("failure-lr", "1") / "model.onnx.zst").write_bytes(b"garbage")
    with pytest.raises(TamperedArtifact):
        registry.load("failure-lr")


def test_schema_is_checked(registry: ModelRegistry, trained: tuple, tmp_path: Path) -> None:
    _register(registry, trained, tmp_path)
    with pytest.raises(SchemaMismatch, match="caller expects"):
        registry.load("failure-lr", expected_inputs=list(reversed(FEATURES)))
    with pytest.raises(SchemaMismatch, match="takes 6 features"):
        registry.load("failure-lr").predict(np.zeros((1, 5), dtype=np.float32))
    artifact = tmp_path / "model.onnx"
    with pytest.raises(SchemaMismatch, match="graph input width is 6"):
        registry.register(
            "failure-lr",
            artifact,
            kind="onnx",
            inputs=[*FEATURES, "extra"],
            outputs=None,
            training_data="",
            metrics={},
        )


def test_unknown_model_and_version(registry: ModelRegistry, trained: tuple, tmp_path: Path) -> None:
    with pytest.raises(UnknownModel):
        registry.load("nope")
    _register(registry, trained, tmp_path, promote=False)
    with pytest.raises(UnknownVersion, match="no promoted version"):
        registry.load("failure-lr")
    with pytest.raises(UnknownVersion, match="no version '9'"):
        registry.load("failure-lr", "9")
    with pytest.raises(ValueError, match="kind must be one of onnx, river"):
        registry.register(
            "x", tmp_path / "model.onnx", kind="tf", inputs=FEATURES,  # type: ignore[arg-type]
            outputs=None, training_data="", metrics={},
        )  # fmt: skip
    with pytest.raises(RegistryError, match="already registered"):
        _register(registry, trained, tmp_path, version="1")


def test_promote_is_atomic_and_announced(
    registry: ModelRegistry, trained: tuple, tmp_path: Path
) -> None:
    _register(registry, trained, tmp_path)
    second = _register(registry, trained, tmp_path, promote=False, parent_version="1")
    assert second.version == "2" and second.parent_version == "1"
    assert registry.manifest("failure-lr").version == "1"
    registry.promote("failure-lr", "2")
    assert (registry.root / "failure-lr" / "PROMOTED").read_text().strip() == "2"
    assert not list((registry.root / "failure-lr").glob(".*tmp"))
    ann = registry.announcement("failure-lr")
    assert ann.version == "2" and ann.sha256 == second.sha256
    assert ModelAnnouncement.from_bytes(ann.to_bytes()) == ann
    assert ann.key == b"failure-lr"


def test_handle_hot_swap(registry: ModelRegistry, trained: tuple, tmp_path: Path) -> None:
    _register(registry, trained, tmp_path)
    handle = registry.handle("failure-lr", expected_inputs=FEATURES)
    assert registry.reload_if_changed(handle) is False
    _register(registry, trained, tmp_path, promote=True)
    assert registry.reload_if_changed(handle) is True
    assert handle.ref == "failure-lr@2" and handle.generation == 1
    ann = registry.announcement("failure-lr", "1")
    assert registry.apply(ann, handle) is True and handle.ref == "failure-lr@1"
    assert registry.apply(ann, handle) is False
    forged = ModelAnnouncement("failure-lr", "2", "0" * 64)
    with pytest.raises(TamperedArtifact, match="announced sha256"):
        registry.apply(forged, handle)
    assert handle.ref == "failure-lr@1"


class _SlowModel(LoadedModel):
    def __init__(self, base: LoadedModel, started: threading.Event, go: threading.Event) -> None:
        super().__init__(base.manifest, base.path, base.memory, session=base.session)
        self.started, self.go = started, go

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.started.set()
        self.go.wait(5)
        return np.full(len(features), -1.0)


def test_in_flight_call_finishes_on_old_model(
    registry: ModelRegistry, trained: tuple, tmp_path: Path
) -> None:
    _register(registry, trained, tmp_path)
    started, go = threading.Event(), threading.Event()
    handle = ModelHandle(_SlowModel(registry.load("failure-lr"), started, go))
    x = trained[1][:3]
    results: list[np.ndarray] = []
    worker = threading.Thread(target=lambda: results.append(handle.predict(x)))
    worker.start()
    assert started.wait(5)
    old = handle.swap(registry.load("failure-lr"))
    assert isinstance(old, _SlowModel)
    assert (handle.predict(x) >= 0).all()  # new calls use the new model
    go.set()
    worker.join(5)
    assert (results[0] == -1.0).all()  # the in-flight call finished on the old one


def test_river_model_round_trip(tmp_path: Path) -> None:
    from river import linear_model

    model = linear_model.LogisticRegression()
    rng = np.random.default_rng(0)
    for row in rng.normal(size=(50, 2)):
        model.learn_one({"a": row[0], "b": row[1]}, bool(row[0] > 0))
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(pickle.dumps(model))
    registry = ModelRegistry(tmp_path / "artifacts", sessions=SessionCache())
    registry.register(
        "river-lr", artifact, kind="river", inputs=["a", "b"], outputs=["proba"],
        training_data="synthetic", metrics={}, promote=True,
    )  # fmt: skip
    scores = registry.load("river-lr", expected_inputs=["a", "b"]).predict(
        np.array([[3.0, 0.0], [-3.0, 0.0]])
    )
    assert scores[0] > 0.5 > scores[1]


def test_announcement_rejects_garbage() -> None:
    with pytest.raises(RegistryError):
        ModelAnnouncement.from_bytes(b"{not json")
