"""What the worker process imports (issue #12, worker memory): `edgeml.app.main`, the module
Faust's CLI loads in every worker, brings river but not scikit-learn (river's optional
`iter_sklearn_dataset`: ~6 MB of RSS and ~150 modules no worker uses). It also sets the GC up
(`Settings.gc_threshold`: a higher young-generation threshold, the start-up heap frozen).

`app.process.skipping_optional_imports` does it: it must block only inside, only
modules not imported yet, and leave them importable afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeml.app.process import skipping_optional_imports

_PROBE = """
import gc, json, sys
import edgeml.app.main as main
print(json.dumps({
    "gc": [gc.get_threshold()[0], gc.get_freeze_count() > 10_000],
    "sklearn": sorted(m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")),
    "river": "river.preprocessing" in sys.modules,
    "app": main.app.conf.id,
}))
"""


def test_the_worker_app_module_does_not_import_sklearn(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    env.update(
        EDGEML_HOME=str(tmp_path / "home"),
        EDGEML_STORE="memory://",
        EDGEML_SCORING_KERNEL="reference",  # no numba compile: the imports are the subject
        EDGEML_APP_ID="imports-probe",
    )
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "gc": [20_000, True],
        "sklearn": [],
        "river": True,
        "app": "imports-probe",
    }


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    """A fresh importable module `name` (VALUE = 42), not imported yet."""
    (tmp_path / f"{name}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_a_skipped_module_raises_importerror_inside_and_imports_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "edgeml_skip_probe_a")
    with skipping_optional_imports((name,)):
        with pytest.raises(ImportError):
            __import__(name)
        with pytest.raises(ImportError):  # a submodule needs its parent first
            __import__(f"{name}.sub")
    assert name not in sys.modules
    module = __import__(name)
    assert module.VALUE == 42
    monkeypatch.delitem(sys.modules, name)


def test_a_module_imported_before_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "edgeml_skip_probe_b")
    before = __import__(name)
    with skipping_optional_imports((name,)):
        assert __import__(name) is before
    assert sys.modules[name] is before
    monkeypatch.delitem(sys.modules, name)


def test_the_block_is_lifted_when_the_import_inside_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "edgeml_skip_probe_c")
    with pytest.raises(RuntimeError), skipping_optional_imports((name,)):
        raise RuntimeError("an import inside failed")
    assert name not in sys.modules
    assert __import__(name).VALUE == 42
    monkeypatch.delitem(sys.modules, name)


def test_gc_threshold_zero_keeps_python_defaults() -> None:
    import gc

    from edgeml.app.process import configure_process, freeze_startup_heap
    from edgeml.app.settings import Settings

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    settings = Settings(gc_threshold=0, event_loop="asyncio")
    configure_process(settings)
    freeze_startup_heap(settings)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)
    try:
        configure_process(Settings(gc_threshold=5_000, event_loop="asyncio"))
        assert gc.get_threshold() == (5_000, *before[1:])
    finally:
        gc.set_threshold(*before)
