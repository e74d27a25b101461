"""numba's cache folder follows every kernel module's source, not only the decorated one's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from numba import config

import edgeml.models.kernel as kernel


def test_the_cache_folder_is_named_by_a_digest_of_every_kernel_source(tmp_path: Path) -> None:
    here = Path(kernel.__file__).parent
    copy = tmp_path / "kernel"
    shutil.copytree(here, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernel.sources_digest(copy)
    assert before == kernel.sources_digest(here)
    if "NUMBA_CACHE_DIR" not in os.environ:  # numba's own setting wins
        assert Path(config.CACHE_DIR).name == before
    step = next(p for p in sorted(copy.glob("*.py")) if p.name != "batch.py")
    step.write_text(step.read_text() + "\n# an edit of a step module only\n")
    assert kernel.sources_digest(copy) != before
