"""The manifest of one registered model version, the registry's errors and the hot-swap record.

A manifest is written once, next to its artifact, as `manifest.json`; it is what the registry
checks every load against. `ModelAnnouncement` is the small record a worker publishes on the
compacted `model-registry` topic (key = model id) so every other worker swaps to the same
version: it carries the artifact's sha256, so a worker never runs a file other than the one
announced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from edgeml.topics.errors import EdgeMLError

__all__ = [
    "KINDS",
    "MANIFEST_SCHEMA",
    "LatencyStats",
    "ManifestError",
    "ModelAnnouncement",
    "ModelManifest",
    "QualityBudgetExceeded",
    "RegistryError",
    "SchemaMismatch",
    "TamperedArtifact",
    "UnknownModel",
    "UnknownVersion",
    "utc_now_iso",
]

MANIFEST_SCHEMA = 1
KINDS = ("onnx", "river")
Kind = Literal["onnx", "river"]


class RegistryError(EdgeMLError):
    """Something about a registered model is wrong or missing."""


class UnknownModel(RegistryError):
    """No model with this id is registered."""


class UnknownVersion(RegistryError):
    """The model exists but not this version (or none is promoted)."""


class TamperedArtifact(RegistryError):
    """An artifact's bytes do not hash to what its manifest (or announcement) says."""


class SchemaMismatch(RegistryError):
    """The model's inputs are not the features the caller (or the graph) expects."""


class ManifestError(RegistryError):
    """A manifest file is missing, unreadable or lacks a required field."""


class QualityBudgetExceeded(RegistryError):
    """An optimized model lost more quality than the budget allows; it was not registered."""


def utc_now_iso() -> str:
    """Now, as a timezone-aware UTC ISO-8601 string with seconds precision."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True, frozen=True)
class LatencyStats:
    """Single-sample predict latency measured at registration (microseconds)."""

    p50_us: float
    p99_us: float
    threads: int = 1
    machine: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        return cls(
            p50_us=float(data["p50_us"]),
            p99_us=float(data["p99_us"]),
            threads=int(data.get("threads", 1)),
            machine=str(data.get("machine", "")),
        )


@dataclass(slots=True, frozen=True)
class ModelManifest:
    """What one registered model version is, where its bytes are and how to check them.

    Created by `ModelRegistry.register`; read back with `ModelRegistry.manifest`. `file` is
    relative to the version folder. When `compression` is "zstd", `sha256` is the hash of the
    shipped (compressed) file and `content_sha256` the hash of the decompressed model; both are
    verified on load. `holdout` names an optional `holdout.npz` (arrays X, y) written by the
    trainer: the evaluation set `edgeml optimize` measures quality on.
    """

    model_id: str
    version: str
    kind: Kind
    file: str
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    training_data: str
    metrics: dict[str, float]
    size_bytes: int
    created_at: str
    latency: LatencyStats | None = None
    parent_version: str | None = None
    task: Literal["classifier", "regressor", "scorer"] = "classifier"
    compression: Literal["zstd"] | None = None
    content_sha256: str | None = None
    holdout: str | None = None
    holdout_sha256: str | None = None
    optimization: dict[str, Any] = field(default_factory=dict)
    schema: int = MANIFEST_SCHEMA

    @property
    def ref(self) -> str:
        """`model_id@version`, the form predictions and logs carry."""
        return f"{self.model_id}@{self.version}"

    @property
    def model_sha256(self) -> str:
        """The hash of the model bytes a session is built from (decompressed when compressed)."""
        return self.content_sha256 or self.sha256

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        data["outputs"] = list(self.outputs)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelManifest:
        try:
            kind = data["kind"]
            if kind not in KINDS:
                raise ManifestError(f"manifest kind {kind!r} is not one of {', '.join(KINDS)}")
            latency = data.get("latency")
            return cls(
                model_id=str(data["model_id"]),
                version=str(data["version"]),
                kind=kind,
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                inputs=tuple(str(name) for name in data["inputs"]),
                outputs=tuple(str(name) for name in data["outputs"]),
                training_data=str(data.get("training_data", "")),
                metrics={str(k): float(v) for k, v in dict(data.get("metrics") or {}).items()},
                size_bytes=int(data["size_bytes"]),
                created_at=str(data["created_at"]),
                latency=LatencyStats.from_dict(latency) if latency else None,
                parent_version=data.get("parent_version"),
                task=data.get("task", "classifier"),
                compression=data.get("compression"),
                content_sha256=data.get("content_sha256"),
                holdout=data.get("holdout"),
                holdout_sha256=data.get("holdout_sha256"),
                optimization=dict(data.get("optimization") or {}),
                schema=int(data.get("schema", MANIFEST_SCHEMA)),
            )
        except KeyError as exc:
            raise ManifestError(f"manifest lacks required field {exc.args[0]!r}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelManifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a JSON object")
        return cls.from_dict(data)


@dataclass(slots=True, frozen=True)
class ModelAnnouncement:
    """\"Model `model_id` is now `version`, whose artifact hashes to `sha256`.\"

    Published (key = `model_id`) on the compacted `model-registry` topic when a version is
    promoted; each worker hands it to `ModelRegistry.apply(announcement, handle)`. Faust-free:
    the wire form is compact JSON bytes.
    """

    model_id: str
    version: str
    sha256: str
    announced_at: str = field(default_factory=utc_now_iso)

    @classmethod
    def of(cls, manifest: ModelManifest) -> ModelAnnouncement:
        return cls(model_id=manifest.model_id, version=manifest.version, sha256=manifest.sha256)

    @property
    def key(self) -> bytes:
        """The Kafka key: the model id, so compaction keeps the latest version per model."""
        return self.model_id.encode()

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelAnnouncement:
        try:
            obj = json.loads(data)
            return cls(
                model_id=str(obj["model_id"]),
                version=str(obj["version"]),
                sha256=str(obj["sha256"]),
                announced_at=str(obj.get("announced_at", "")),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ManifestError(f"not a model announcement: {exc!r}") from None
