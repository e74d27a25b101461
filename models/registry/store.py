"""`ModelRegistry`: registered versions under a root, verified loading, hot swaps, promotion."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeml.models.latency import machine_label, measure, rss_bytes
from edgeml.models.manifest import (
    KINDS,
    LatencyStats,
    ManifestError,
    ModelAnnouncement,
    ModelManifest,
    RegistryError,
    SchemaMismatch,
    TamperedArtifact,
    UnknownModel,
    UnknownVersion,
    utc_now_iso,
)
from edgeml.models.registry.backends import LoadedModel, _check_graph_inputs
from edgeml.models.registry.handle import ModelHandle
from edgeml.models.registry.layout import (
    _MODEL_ID,
    _VERSION,
    FAILURE_MODEL_ID,
    HOLDOUT,
    MANIFEST,
    PROMOTED,
    TASKS,
    _atomic_write,
    _verified_bytes,
    _version_key,
    sha256_bytes,
)
from edgeml.models.registry.sessions import ModelMemory, SessionCache, default_sessions

__all__ = ["ModelRegistry", "load_promoted"]


class ModelRegistry:
    """Registered model versions under `root`, with verified loading and atomic promotion.

    The root is always explicit (the worker's and the CLI's is `Settings.registry_root`; tests
    pass a `tmp_path` root and a fresh `SessionCache`): a default would point into the installed
    package, which is read-only data (`models.shipped.SHIPPED_ROOT`). `threads` is the ONNX
    intra-op thread count of loaded sessions.
    """

    def __init__(
        self,
        root: Path,
        *,
        threads: int = 1,
        sessions: SessionCache | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.root = Path(root)
        self.threads = threads
        self.sessions = sessions if sessions is not None else default_sessions()

    # -- reading ------------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _MODEL_ID.match(p.name))

    def versions(self, model_id: str) -> list[str]:
        model_dir = self._model_dir(model_id)
        found = [
            p.name
            for p in model_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        ]
        return sorted(found, key=_version_key)

    def manifests(self, model_id: str | None = None) -> list[ModelManifest]:
        ids = [model_id] if model_id is not None else self.model_ids()
        return [self._read_manifest(mid, v) for mid in ids for v in self.versions(mid)]

    def promoted_version(self, model_id: str) -> str | None:
        marker = self._model_dir(model_id) / PROMOTED
        if not marker.is_file():
            return None
        return marker.read_text().strip() or None

    def manifest(self, model_id: str, version: str | None = None) -> ModelManifest:
        """One version's manifest; `version=None` means the promoted version."""
        if version is None:
            version = self.promoted_version(model_id)
            if version is None:
                raise UnknownVersion(
                    f"{model_id} has no promoted version (versions: "
                    f"{', '.join(self.versions(model_id)) or 'none'})"
                )
        return self._read_manifest(model_id, version)

    def version_dir(self, model_id: str, version: str) -> Path:
        return self._model_dir(model_id) / version

    def holdout(self, model_id: str, version: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The trainer's evaluation set (X, y) from `holdout.npz`, hash-verified."""
        manifest = self.manifest(model_id, version)
        if not manifest.holdout:
            raise ManifestError(
                f"{manifest.ref} has no holdout set: the trainer must register one "
                f"(holdout.npz with arrays X, y; see docs/CONTRACTS.md)"
            )
        path = self.version_dir(manifest.model_id, manifest.version) / manifest.holdout
        data = path.read_bytes()
        if manifest.holdout_sha256 and sha256_bytes(data) != manifest.holdout_sha256:
            raise TamperedArtifact(f"{manifest.ref}: {manifest.holdout} does not match its sha256")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return np.asarray(npz["X"], dtype=np.float32), np.asarray(npz["y"])

    # -- loading ------------------------------------------------------------------------------

    def load(
        self,
        model_id: str,
        version: str | None = None,
        *,
        expected_inputs: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> LoadedModel:
        """Verify and load one version (None = promoted).

        Raises `TamperedArtifact` when the bytes do not hash to the manifest's sha256 and
        `SchemaMismatch` when `expected_inputs` (names, in order) or the graph's input width
        disagree with the manifest.
        """
        manifest = self.manifest(model_id, version)
        if expected_inputs is not None and tuple(expected_inputs) != manifest.inputs:
            raise SchemaMismatch(
                f"{manifest.ref} inputs are {list(manifest.inputs)}, "
                f"caller expects {list(expected_inputs)}"
            )
        path = self.version_dir(manifest.model_id, manifest.version)
        model_bytes = _verified_bytes(manifest, path)
        if manifest.kind == "river":
            before = rss_bytes()
            start = time.perf_counter()
            estimator = pickle.loads(model_bytes)  # safe: bytes hash to the manifest's sha256
            memory = ModelMemory(
                file_bytes=manifest.size_bytes,
                rss_delta_bytes=max(rss_bytes() - before, 0),
                session_create_ms=(time.perf_counter() - start) * 1000.0,
            )
            return LoadedModel(manifest, path, memory, estimator=estimator)
        cached = self.sessions.get(manifest.model_sha256, model_bytes, threads or self.threads)
        _check_graph_inputs(manifest, cached.session)
        memory = ModelMemory(manifest.size_bytes, cached.rss_delta_bytes, cached.create_ms)
        return LoadedModel(manifest, path, memory, session=cached.session)

    def verify(self, model_id: str, version: str | None = None) -> ModelManifest:
        """Check hashes (artifact and holdout) and the graph's inputs; return the manifest."""
        loaded = self.load(model_id, version)
        if loaded.manifest.holdout:
            x, _ = self.holdout(model_id, loaded.manifest.version)
            if x.ndim != 2 or x.shape[1] != len(loaded.manifest.inputs):
                raise SchemaMismatch(
                    f"{loaded.manifest.ref}: holdout X has shape {x.shape}, "
                    f"expected (n, {len(loaded.manifest.inputs)})"
                )
        return loaded.manifest

    def handle(
        self,
        model_id: str,
        version: str | None = None,
        *,
        expected_inputs: Sequence[str] | None = None,
    ) -> ModelHandle:
        return ModelHandle(self.load(model_id, version, expected_inputs=expected_inputs))

    def promoted_handle(self, model_id: str = FAILURE_MODEL_ID) -> ModelHandle | None:
        """A handle on `model_id`'s promoted version (loaded with this registry's `threads`),
        or None when the model is not registered or has nothing promoted: a worker without
        one scores failure risk with the online model only."""
        try:
            if self.promoted_version(model_id) is None:
                return None
            return self.handle(model_id)
        except (UnknownModel, UnknownVersion):
            return None

    # -- hot swap -----------------------------------------------------------------------------

    def announcement(self, model_id: str, version: str | None = None) -> ModelAnnouncement:
        """The record to publish on `model-registry` for this version (None = promoted)."""
        return ModelAnnouncement.of(self.manifest(model_id, version))

    def announced(
        self, announcement: ModelAnnouncement, current: ModelManifest
    ) -> ModelManifest | None:
        """The manifest an announcement asks whoever serves `current` to swap to; None when
        it is another model or the version already served. Raises `TamperedArtifact` when the
        local artifact is not the announced one."""
        if announcement.model_id != current.model_id:
            return None
        if announcement.sha256 == current.sha256 and announcement.version == current.version:
            return None
        manifest = self.manifest(announcement.model_id, announcement.version)
        if manifest.sha256 != announcement.sha256:
            raise TamperedArtifact(
                f"{manifest.ref}: announced sha256 {announcement.sha256[:12]} but the local "
                f"artifact is {manifest.sha256[:12]}"
            )
        return manifest

    def apply(self, announcement: ModelAnnouncement, handle: ModelHandle) -> bool:
        """Swap `handle` to the announced version; False when it already serves it.

        Raises `TamperedArtifact` when the local artifact is not the announced one.
        """
        current = handle.current.manifest
        manifest = self.announced(announcement, current)
        if manifest is None:
            return False
        handle.swap(self.load(manifest.model_id, manifest.version, expected_inputs=current.inputs))
        return True

    def reload_if_changed(self, handle: ModelHandle) -> bool:
        """Swap `handle` to its model's promoted version if that changed; True when swapped."""
        current = handle.current.manifest
        promoted = self.promoted_version(current.model_id)
        if promoted is None or promoted == current.version:
            return False
        handle.swap(self.load(current.model_id, promoted, expected_inputs=current.inputs))
        return True

    # -- writing ------------------------------------------------------------------------------

    def register(
        self,
        model_id: str,
        artifact: Path,
        *,
        kind: Literal["onnx", "river"],
        inputs: Sequence[str],
        outputs: Sequence[str] | None = None,
        training_data: str,
        metrics: dict[str, float],
        parent_version: str | None = None,
        promote: bool = False,
        version: str | None = None,
        task: Literal["classifier", "regressor", "scorer"] = "classifier",
        holdout: Path | None = None,
        compress: bool = False,
        optimization: dict[str, Any] | None = None,
        measure_latency: bool = True,
    ) -> ModelManifest:
        """Copy `artifact` in as a new version, measure it, write its manifest; return it.

        `holdout` is an `.npz` with arrays X (n, len(inputs)) and y: the evaluation set the
        optimizer uses. `compress=True` ships the ONNX file zstd-compressed (verified and
        decompressed on load). Versions are "1", "2", ... unless `version` is given.
        """
        if not _MODEL_ID.match(model_id):
            raise ValueError(f"model_id must match {_MODEL_ID.pattern}, got {model_id!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if compress and kind != "onnx":
            raise ValueError("compress=True is only supported for kind='onnx'")
        inputs = tuple(inputs)
        if not inputs or len(set(inputs)) != len(inputs):
            raise SchemaMismatch(f"inputs must be non-empty and unique, got {list(inputs)}")
        raw = Path(artifact).read_bytes()
        model_dir = self.root / model_id
        model_dir.mkdir(parents=True, exist_ok=True)
        existing = self.versions(model_id)
        if version is None:
            numeric = [int(v) for v in existing if v.isdigit()]
            version = str(max(numeric, default=0) + 1)
        elif not _VERSION.match(version):
            raise ValueError(f"version must match {_VERSION.pattern}, got {version!r}")
        if version in existing:
            raise RegistryError(f"{model_id}@{version} is already registered")
        if parent_version is not None and parent_version not in existing:
            raise UnknownVersion(f"parent version {model_id}@{parent_version} is not registered")

        predict: Any = None
        if kind == "onnx":
            cached = self.sessions.get(sha256_bytes(raw), raw, self.threads)
            graph_outputs = tuple(o.name for o in cached.session.get_outputs())
            outputs = tuple(outputs) if outputs is not None else graph_outputs
            probe = ModelManifest(
                model_id, version, kind, "", "", inputs, outputs, "", {}, 0, "", task=task
            )
            _check_graph_inputs(probe, cached.session)
            predict = LoadedModel(probe, model_dir, ModelMemory(0, 0, 0.0), session=cached.session)
        else:
            outputs = tuple(outputs or ("score",))
            estimator = pickle.loads(raw)
            probe = ModelManifest(
                model_id, version, kind, "", "", inputs, outputs, "", {}, 0, "", task=task
            )
            predict = LoadedModel(probe, model_dir, ModelMemory(0, 0, 0.0), estimator=estimator)

        holdout_bytes: bytes | None = None
        sample: np.ndarray | None = None
        if holdout is not None:
            holdout_bytes = Path(holdout).read_bytes()
            with np.load(io.BytesIO(holdout_bytes), allow_pickle=False) as npz:
                if "X" not in npz or "y" not in npz:
                    raise ManifestError(f"{holdout} must hold arrays X and y")
                sample = np.asarray(npz["X"], dtype=np.float32)
                n_y = len(npz["y"])
            if sample.ndim != 2 or sample.shape[1] != len(inputs) or len(sample) != n_y:
                raise SchemaMismatch(
                    f"holdout X {sample.shape} / y ({n_y},) do not fit {len(inputs)} inputs"
                )

        latency = None
        if measure_latency:
            if sample is None or len(sample) == 0:
                sample = np.random.default_rng(0).normal(size=(64, len(inputs)))
            timing = measure(predict.predict, sample[:256], single_calls=300, batch_calls=0)
            latency = LatencyStats(
                round(timing.p50_us, 1), round(timing.p99_us, 1), self.threads, machine_label()
            )

        if kind == "onnx":
            file_name = "model.onnx.zst" if compress else "model.onnx"
        else:
            file_name = "model.pkl"
        shipped = raw
        if compress:
            import zstandard

            shipped = zstandard.ZstdCompressor(level=19).compress(raw)

        manifest = ModelManifest(
            model_id=model_id,
            version=version,
            kind=kind,
            file=file_name,
            sha256=sha256_bytes(shipped),
            inputs=inputs,
            outputs=tuple(outputs),
            training_data=training_data,
            metrics={k: float(v) for k, v in metrics.items()},
            size_bytes=len(shipped),
            created_at=utc_now_iso(),
            latency=latency,
            parent_version=parent_version,
            task=task,
            compression="zstd" if compress else None,
            content_sha256=sha256_bytes(raw) if compress else None,
            holdout=HOLDOUT if holdout_bytes is not None else None,
            holdout_sha256=sha256_bytes(holdout_bytes) if holdout_bytes is not None else None,
            optimization=dict(optimization or {}),
        )
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            (staging / file_name).write_bytes(shipped)
            if holdout_bytes is not None:
                (staging / HOLDOUT).write_bytes(holdout_bytes)
            _atomic_write(staging / MANIFEST, manifest.to_json().encode())
            os.rename(staging, model_dir / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if promote:
            self.promote(model_id, version)
        return manifest

    def promote(self, model_id: str, version: str) -> ModelManifest:
        """Verify `version`'s artifact, then point PROMOTED at it (atomic replace)."""
        manifest = self._read_manifest(model_id, version)
        _verified_bytes(manifest, self.version_dir(model_id, version))
        _atomic_write(self._model_dir(model_id) / PROMOTED, f"{version}\n".encode())
        return manifest

    # -- internals ----------------------------------------------------------------------------

    def _model_dir(self, model_id: str) -> Path:
        model_dir = self.root / model_id
        if not _MODEL_ID.match(model_id) or not model_dir.is_dir():
            known = ", ".join(self.model_ids()) or "none"
            raise UnknownModel(f"no model {model_id!r} in {self.root} (known: {known})")
        return model_dir

    def _read_manifest(self, model_id: str, version: str) -> ModelManifest:
        path = self._model_dir(model_id) / version / MANIFEST
        if not _VERSION.match(version) or not path.is_file():
            raise UnknownVersion(
                f"{model_id} has no version {version!r} "
                f"(versions: {', '.join(self.versions(model_id)) or 'none'})"
            )
        manifest = ModelManifest.from_json(path.read_text())
        if manifest.model_id != model_id or manifest.version != version:
            raise ManifestError(f"{path} describes {manifest.ref}, not {model_id}@{version}")
        return manifest

    def model_bytes(self, model_id: str, version: str | None = None) -> bytes:
        """The verified (and decompressed) model bytes of one version (None = promoted)."""
        manifest = self.manifest(model_id, version)
        return _verified_bytes(manifest, self.version_dir(model_id, manifest.version))

    def holdout_path(self, model_id: str, version: str | None = None) -> Path | None:
        manifest = self.manifest(model_id, version)
        if not manifest.holdout:
            return None
        return self.version_dir(model_id, manifest.version) / manifest.holdout


def load_promoted(
    root: Path,
    threads: int = 1,
    *,
    model_id: str = FAILURE_MODEL_ID,
    sessions: SessionCache | None = None,
) -> ModelHandle | None:
    """The promoted `model_id` under `root` as a handle (None when there is none): the one
    explicit way tools, benches and tests get the model a worker would serve at start-up
    (`Scorer` itself never reads the disk)."""
    return ModelRegistry(root, threads=threads, sessions=sessions).promoted_handle(model_id)
