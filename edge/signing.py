"""Ed25519 signatures on registered model versions: the edge loads only models its key trusts.

What is signed is a version's `manifest.json`, byte for byte: it holds the sha256 of the model
file and of the holdout set, which the registry checks on every load (`TamperedArtifact`), so one
signature covers every byte the agent will run. When the version has a golden set
(`golden.npz`, written by `write_golden` at signing: the inputs and the answers of the verified
model, which an agent checks a downloaded model against before serving it), its sha256 is
signed too (`signed_payload`), so neither the answers nor their absence can be forged. The
signature is the 64 raw bytes in `manifest.json.sig` next to it. Keys are PEM files
(`edgeml edge keygen`): the private one stays where models are promoted, the public one is
installed on every device (`EDGEML_EDGE_MODEL_PUBLIC_KEY`).

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     version = pathlib.Path(tmp)
...     _ = (version / "manifest.json").write_text('{"sha256": "00"}')
...     private, public = generate_keypair()
...     _ = sign_version(version, private)
...     verify_version(version, public)  # passes
...     _ = (version / "manifest.json").write_text('{"sha256": "11"}')
...     try:
...         verify_version(version, public)
...     except UntrustedModel as exc:
...         print(exc.reason)
bad_signature
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edgeml.edge.errors import EdgeError

__all__ = [
    "GOLDEN",
    "MANIFEST",
    "SIGNATURE",
    "UntrustedModel",
    "generate_keypair",
    "read_golden",
    "sign_version",
    "signed_payload",
    "verify_version",
    "write_golden",
]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
GOLDEN = "golden.npz"
GOLDEN_ROWS = 32  # enough rows to catch a wrong or corrupted model (off by ~0.1); 4.7 KB


class UntrustedModel(EdgeError):
    """A model version is unsigned or its signature does not verify. `reason` is the metric
    label: `unsigned` or `bad_signature`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def sign_version(version_dir: Path, private_pem: bytes) -> Path:
    """Sign `version_dir/manifest.json`; returns the signature file written."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeError("the signing key is not an Ed25519 private key")
    target = version_dir / SIGNATURE
    target.write_bytes(key.sign(signed_payload(version_dir)))
    return target


def signed_payload(version_dir: Path) -> bytes:
    """The bytes a signature covers: the manifest, plus the golden set's sha256 when present."""
    payload = (version_dir / MANIFEST).read_bytes()
    golden = version_dir / GOLDEN
    if golden.is_file():
        payload += b"\n" + GOLDEN.encode() + b" sha256=" + sha256(golden.read_bytes()).encode()
    return payload


def write_golden(version_dir: Path, *, rows: int = GOLDEN_ROWS, atol: float = 1e-5) -> Path | None:
    """Write `golden.npz` (X, the scores of the verified in-process model, atol) from the
    registry's golden set of this version (`models.inference.loading.golden_set`: the first
    `rows` holdout rows); None when the version has no holdout to draw it from."""
    import io

    import numpy as np

    from edgeml.models.inference.backends import SCORE
    from edgeml.models.inference.loading import golden_set
    from edgeml.models.registry import ModelRegistry

    registry = ModelRegistry(version_dir.parent.parent)
    golden = golden_set(registry, version_dir.parent.name, version_dir.name, rows=rows, atol=atol)
    if golden is None:
        return None
    (x,) = golden.inputs.values()
    buffer = io.BytesIO()
    np.savez(buffer, X=np.asarray(x), score=np.asarray(golden.expected[SCORE]), atol=atol)
    target = version_dir / GOLDEN
    target.write_bytes(buffer.getvalue())
    return target


def read_golden(path: Path) -> Any:
    """The `GoldenSet` of a `golden.npz` (`models.inference.health`), for `GoldenSet.check`."""
    import io

    import numpy as np

    from edgeml.models.inference.backends import SCORE
    from edgeml.models.inference.health import GoldenSet

    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
        x = np.ascontiguousarray(npz["X"], dtype=np.float32)
        return GoldenSet({"input": x}, {SCORE: np.asarray(npz["score"])}, float(npz["atol"]))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_version(version_dir: Path, public_pem: bytes) -> None:
    """Raise `UntrustedModel` unless `version_dir`'s manifest is signed by `public_pem`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise EdgeError("the model public key is not an Ed25519 public key")
    signature = version_dir / SIGNATURE
    if not signature.is_file():
        raise UntrustedModel("unsigned", f"unsigned: {version_dir} has no {SIGNATURE}")
    try:
        key.verify(signature.read_bytes(), signed_payload(version_dir))
    except InvalidSignature:
        raise UntrustedModel(
            "bad_signature",
            f"bad signature: {MANIFEST} changed since it was signed, or another key signed it",
        ) from None
