"""The wheel, installed into a fresh venv outside the checkout, works as a new user would use it
(issue #10, item 6): with the core dependencies only it scores a reading (no Faust installed);
the wheel installs one top-level package, `edgeml`, and its `edgeml` script says in one line that
the command line needs the `cli` extra; with that extra `edgeml --help` runs and
`edgeml models list` serves the shipped model from a copy in the working directory; and none of
it writes a file under site-packages.

No broker: it is in tests/integration because it builds and installs (pip, its cache, the
package index); measured 40 s with a warm pip cache (build 4 s, core 14 s, cli 25 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What is not source: copying the checkout without these keeps the build from reading (and
# setuptools from writing `build/`, `*.egg-info`) into the working tree, and stale files in
# `build/lib` from reaching the wheel.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "var", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "htmlcov", ".coverage*",
    "tests", "docs", "bench",
)  # fmt: skip

SCORE_ONE_READING = textwrap.dedent(
    """
    import importlib.util, json, sys, time
    from pathlib import Path

    import orjson

    from edgeml.models.pipeline import Inbound, ReadingPipeline
    from edgeml.models.registry import load_promoted
    from edgeml.models.scoring import DeviceState, Scorer
    from edgeml.models.shipped import seed_registry

    class Store:
        def __init__(self):
            self.data = {}
        def load(self, device_id, origin):
            raw = self.data.get(device_id)
            return DeviceState.from_bytes(raw) if raw else None
        def save(self, device_id, state, origin):
            self.data[device_id] = state.to_bytes()

    root = Path("registry")
    seeded = seed_registry(root)
    scorer = Scorer(failure_model=load_promoted(root))
    reading = {"device_id": "dev-1", "ts": time.time() - 5, "seq": 0,
               "metrics": {"temperature": 21.5, "humidity": 40.0, "pressure": 1013.0,
                           "vibration": 0.3}}
    message = Inbound(b"dev-1", orjson.dumps(reading), "sensor-readings", 0, 0)
    result = ReadingPipeline(scorer).process([message], Store())
    print(json.dumps({
        "seeded": seeded,
        "predictions": [orjson.loads(r.value) for r in result.outbound
                        if r.role == "predictions"],
        "dead_letters": result.dead_letters,
        "faust": importlib.util.find_spec("faust") is not None,
        "faust_loaded": "faust" in sys.modules,
        "packages": sorted({m.split(".")[0] for m in sys.modules}),
    }))
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would point the child back at the checkout
    (PYTHONPATH, EDGEML_*, coverage's subprocess hook) or hide byte-code writes."""
    dropped = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME", "VIRTUAL_ENV")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("EDGEML_", "COVERAGE_"))
    }
    return {**env, **extra}


def _run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in folder.rglob("*")
    }


def _diff(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    changed = [name for name in after if before.get(name) != after[name]]
    return sorted(changed + [f"deleted {name}" for name in before if name not in after])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel-build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), "."], source)
    (built,) = out.glob("edgeml-*.whl")
    return built


def test_the_wheel_scores_with_core_only_and_runs_the_cli_without_writing_site_packages(
    wheel: Path, tmp_path: Path
) -> None:
    venv, cwd = tmp_path / "venv", tmp_path / "work"
    cwd.mkdir()
    assert ROOT not in venv.parents and ROOT not in cwd.parents
    # A venv without pip of its own (instant) installed into by this interpreter's pip.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd)
        .stdout.strip()
    )  # fmt: skip

    _run([*pip, str(wheel)], tmp_path)  # core only
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.partition("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"edgeml"}
    assert not {"app", "models", "topics", "agents", "sim", "infra", "training"} & {
        path.name for path in site.iterdir()
    }
    no_cli = subprocess.run(
        [str(venv / "bin" / "edgeml"), "--help"], cwd=cwd, env=_clean_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert no_cli.returncode == 2, no_cli.stderr
    assert no_cli.stderr.strip().splitlines() == [
        "edgeml: error: the command line needs the 'cli' extra (module 'typer' is not installed):"
        " pip install 'edgeml[cli]'"
    ]
    before = _listing(site)
    scored = json.loads(_run([str(python), "-c", SCORE_ONE_READING], cwd).stdout)
    assert _diff(before, _listing(site)) == []
    assert scored["seeded"] == ["failure-gbm"]
    assert scored["dead_letters"] == 0
    (prediction,) = scored["predictions"]
    assert prediction["device_id"] == "dev-1"
    assert prediction["models"]["failure"].startswith("failure-gbm@")
    assert 0.0 <= prediction["failure_prob"] <= 1.0
    assert scored["faust"] is False and scored["faust_loaded"] is False
    assert not {"faust", "aiokafka", "pydantic_settings", "typer"} & set(scored["packages"])
    assert (cwd / "registry" / "failure-gbm" / "PROMOTED").is_file()

    _run([*pip, f"{wheel}[cli]"], tmp_path)
    before = _listing(site)
    edgeml = str(venv / "bin" / "edgeml")
    shown = _run([edgeml, "--help"], cwd)
    assert "Usage: edgeml" in shown.stdout and "optimize" in shown.stdout
    listed = json.loads(_run([edgeml, "models", "list", "--json"], cwd).stdout)
    assert listed["root"] == str(cwd / "models" / "artifacts")  # the working dir, not the package
    assert [(m["model_id"], m["promoted"]) for m in listed["models"]] == [
        ("failure-gbm", False),  # @1, kept for rollback
        ("failure-gbm", True),  # @2
    ]
    assert _diff(before, _listing(site)) == []
