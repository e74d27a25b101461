"""The models that ship inside the package, and copying them into a writable registry root.

The promoted `failure-gbm` and its manifest ship as package data under `models/artifacts/`.
After `pip install` that folder is site-packages: read it, never write it (`edgeml optimize`
and `edgeml models promote` write into their registry root). A home's default registry root is
therefore filled on first use by `seed_registry(root)`: every shipped model the root lacks is
copied in whole (versions, manifests, holdout, `PROMOTED`), and a model the root already has is
left alone, so promotions and new versions made there win over what ships. From a checkout the
default root *is* the shipped folder and seeding does nothing.

>>> import tempfile
>>> from edgeml.models.registry import ModelRegistry
>>> with tempfile.TemporaryDirectory() as home:
...     root = Path(home) / "models" / "artifacts"
...     first, again = seed_registry(root), seed_registry(root)
...     promoted = ModelRegistry(root).promoted_version("failure-gbm")
>>> first, again, promoted is not None
(['failure-gbm'], [], True)
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

__all__ = ["SHIPPED_ROOT", "seed_registry"]

SHIPPED_ROOT = Path(__file__).resolve().parent / "artifacts"


def seed_registry(root: Path, shipped: Path = SHIPPED_ROOT) -> list[str]:
    """Copy every model under `shipped` that `root` lacks into `root`; return the ids copied.

    Each model is copied to a hidden staging folder and renamed into place, so a reader (or a
    second process seeding at the same time) sees the whole model or none of it; the registry
    skips dot-folders. Copies are made writable by their owner: a system-wide install may ship
    read-only files, and the registry later writes `PROMOTED` and new versions next to them.
    """
    root = Path(root)
    if not shipped.is_dir() or _same_folder(root, shipped):
        return []
    copied: list[str] = []
    for source in sorted(shipped.iterdir()):
        target = root / source.name
        if not source.is_dir() or source.name.startswith((".", "_")) or target.exists():
            continue
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".seed-{source.name}-{uuid.uuid4().hex}"
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(".*", "__pycache__"))
        _owner_writable(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process renamed its copy in first: keep that one
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
            continue
        copied.append(source.name)
    return copied


def _same_folder(root: Path, shipped: Path) -> bool:
    try:
        return root.resolve() == shipped.resolve()
    except OSError:
        return False


def _owner_writable(tree: Path) -> None:
    for folder, _dirs, files in os.walk(tree):
        for path in (folder, *(os.path.join(folder, name) for name in files)):
            mode = os.stat(path).st_mode
            os.chmod(path, mode | 0o200 | (0o100 if path == folder else 0))
