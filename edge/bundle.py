"""Model bundles: one registered, signed model version as ONE Kafka record on `model-artifacts`.

Why a compacted topic and not an HTTP endpoint of the worker: the agent already holds exactly one
way out of the box, the Kafka bootstrap address it forwards to (one firewall rule, one security
config, one reconnect/backoff loop); an HTTP fetch would add a second address, a second client
and a worker web server that must be up at the moment the device comes online. The topic is
compacted with key `model_id@version`, so it keeps the latest bundle of every version for as
long as the announcement that names it (`model-registry`, key = model id) and a device that was
offline for a week fetches what it missed from the same broker it syncs to. A bundle is small
(76 KB and 107 KB for the shipped failure-gbm@2 and @1: the ONNX file base64-encoded, the golden
set of 32 rows 4.7 KB; the holdout is NOT shipped), well under Kafka's default 1 MB record
limit; `edgeml edge publish` creates the topic with an 8 MiB limit anyway.

Wire form: compact JSON, `{"format": 1, "model_id", "version", "files": {name: base64}}`, with
only the names a version may hold (`manifest.json`, `manifest.json.sig`, `golden.npz`, the model
file the manifest names): a bundle can never write outside its own staging folder.

>>> bundle = pack({"manifest.json": b"{}", "model.onnx": b"\\x00"}, "m", "1")
>>> unpack(bundle).files["model.onnx"]
b'\\x00'
>>> try:
...     unpack(b'{"format": 1, "model_id": "m", "version": "1", "files": {"../x": ""}}')
... except BadBundle as exc:
...     print(exc)
bundle m@1: file name '../x' is not one a model version holds
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgeml.edge.errors import EdgeError
from edgeml.edge.signing import GOLDEN, MANIFEST, SIGNATURE

__all__ = ["BUNDLE_FORMAT", "BadBundle", "Bundle", "artifact_key", "pack", "pack_version", "unpack"]

BUNDLE_FORMAT = 1
_FIXED = frozenset({MANIFEST, SIGNATURE, GOLDEN})
_MODEL_FILE = re.compile(r"^model\.(onnx|onnx\.zst|pkl)$")


class BadBundle(EdgeError):
    """A `model-artifacts` record that is not a well-formed bundle."""


def artifact_key(model_id: str, version: str) -> bytes:
    """The `model-artifacts` key of one version (compaction keeps its latest bundle)."""
    return f"{model_id}@{version}".encode()


@dataclass(frozen=True, slots=True)
class Bundle:
    model_id: str
    version: str
    files: dict[str, bytes]

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"

    def write(self, folder: Path) -> None:
        """Write every file into `folder` (created; names were checked by `unpack`)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)


def pack(files: dict[str, bytes], model_id: str, version: str) -> bytes:
    body = {
        "format": BUNDLE_FORMAT,
        "model_id": model_id,
        "version": version,
        "files": {name: base64.b64encode(data).decode() for name, data in sorted(files.items())},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def pack_version(version_dir: Path) -> tuple[bytes, bytes]:
    """(key, bundle) of a registered version folder: its manifest, the model file it names, the
    signature and the golden set when present (`edgeml edge sign` writes both)."""
    manifest = json.loads((version_dir / MANIFEST).read_text())
    names = [MANIFEST, str(manifest["file"]), SIGNATURE, GOLDEN]
    files = {n: (version_dir / n).read_bytes() for n in names if (version_dir / n).is_file()}
    model_id, version = str(manifest["model_id"]), str(manifest["version"])
    return artifact_key(model_id, version), pack(files, model_id, version)


def unpack(data: bytes) -> Bundle:
    """Parse a bundle; raises `BadBundle` (one line) for anything else."""
    try:
        body = json.loads(data)
        model_id, version, encoded = str(body["model_id"]), str(body["version"]), body["files"]
        if body.get("format") != BUNDLE_FORMAT:
            raise BadBundle(f"bundle format {body.get('format')!r}, expected {BUNDLE_FORMAT}")
        if not isinstance(encoded, dict):
            raise BadBundle("bundle 'files' is not an object")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise BadBundle(f"not a model bundle: {type(exc).__name__}: {exc}") from None
    files: dict[str, bytes] = {}
    for name, text in encoded.items():
        if name not in _FIXED and not _MODEL_FILE.match(str(name)):
            raise BadBundle(
                f"bundle {model_id}@{version}: file name {name!r} is not one a model version holds"
            )
        try:
            files[name] = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise BadBundle(f"bundle {model_id}@{version}: {name} is not base64") from None
    if MANIFEST not in files:
        raise BadBundle(f"bundle {model_id}@{version} has no {MANIFEST}")
    return Bundle(model_id, version, files)
