"""The registry's layout on disk: names, paths, hashes, verified reads and atomic writes.

Which file names a version directory holds and what ids and versions may look like (see
docs/CONTRACTS.md); `_verified_bytes` is the one place a model artifact is read back, so every
load checks the sha256 (and the zstd content hash) before anything is unpickled or parsed.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from edgeml.models.manifest import ManifestError, ModelManifest, TamperedArtifact

__all__ = ["FAILURE_MODEL_ID", "sha256_bytes", "sha256_file"]

FAILURE_MODEL_ID = "failure-gbm"  # the offline failure model the Scorer serves
PROMOTED = "PROMOTED"
MANIFEST = "manifest.json"
HOLDOUT = "holdout.npz"
TASKS = ("classifier", "regressor", "scorer")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version_key(version: str) -> tuple[int, int, str]:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _verified_bytes(manifest: ModelManifest, path: Path) -> bytes:
    file = path / manifest.file
    try:
        shipped = file.read_bytes()
    except FileNotFoundError:
        raise TamperedArtifact(f"{manifest.ref}: artifact {file} is missing") from None
    if sha256_bytes(shipped) != manifest.sha256:
        raise TamperedArtifact(
            f"{manifest.ref}: {manifest.file} does not match its manifest sha256 "
            f"{manifest.sha256[:12]}; refusing to load"
        )
    if manifest.compression is None:
        return shipped
    if manifest.compression != "zstd":
        raise ManifestError(f"{manifest.ref}: unknown compression {manifest.compression!r}")
    import zstandard

    try:
        content = zstandard.ZstdDecompressor().decompress(shipped)
    except zstandard.ZstdError as exc:
        raise TamperedArtifact(f"{manifest.ref}: cannot decompress: {exc}") from None
    if manifest.content_sha256 and sha256_bytes(content) != manifest.content_sha256:
        raise TamperedArtifact(
            f"{manifest.ref}: decompressed model does not match content_sha256; refusing"
        )
    return content
