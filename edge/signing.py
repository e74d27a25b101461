"""Ed25519 signatures on registered model versions: the edge loads only models its key trusts.

What is signed is a version's `manifest.json`, byte for byte: it holds the sha256 of the model
file and of the holdout set, which the registry checks on every load (`TamperedArtifact`), so one
signature covers every byte the agent will run. The signature is the 64 raw bytes in
`manifest.json.sig` next to it. Keys are PEM files (`edgeml edge keygen`): the private one stays
where models are promoted, the public one is installed on every device
(`EDGEML_EDGE_MODEL_PUBLIC_KEY`).

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

from pathlib import Path

from edgeml.edge.errors import EdgeError

__all__ = [
    "MANIFEST",
    "SIGNATURE",
    "UntrustedModel",
    "generate_keypair",
    "sign_version",
    "verify_version",
]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"


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
    target.write_bytes(key.sign((version_dir / MANIFEST).read_bytes()))
    return target


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
        key.verify(signature.read_bytes(), (version_dir / MANIFEST).read_bytes())
    except InvalidSignature:
        raise UntrustedModel(
            "bad_signature",
            f"bad signature: {MANIFEST} changed since it was signed, or another key signed it",
        ) from None
