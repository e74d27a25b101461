"""The import contracts of `pyproject.toml` (`lint-imports`, part of `make lint`): kept by the
real tree, and broken by each kind of upward import the architecture forbids.

Each planted case copies the packages' `.py` files (as real folders under `edgeml/`, where the
checkout has symlinks) and `pyproject.toml` into a temporary directory, adds one import to one
module and runs `lint-imports` there: it must exit non-zero and name the contract that caught it.
So a contract that was weakened (or a config that stopped being read) fails here rather than
passing silently.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "agents", "models", "topics", "sim", "infra", "training", "edge")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {
    contract["id"]: contract["name"]
    for contract in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
}


def _lint_imports(cwd: Path) -> tuple[int, str]:
    """Exit status and the report with whitespace runs joined (it wraps long contract names)."""
    # `lint-imports` puts its working directory first on sys.path, so a copied tree is analysed
    # instead of the editable install's checkout.
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def _only_sources(folder: str, names: list[str]) -> set[str]:
    """`copytree` ignore: keep sub-packages and `.py` files (no model artifacts, no caches)."""
    return {
        name
        for name in names
        if name == "__pycache__" or not (name.endswith(".py") or (Path(folder) / name).is_dir())
    }


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / "edgeml" / package, ignore=_only_sources)
    shutil.copy(ROOT / "edgeml" / "__init__.py", tree / "edgeml" / "__init__.py")
    shutil.copytree(ROOT / "bench", tree / "bench", ignore=_only_sources)
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_real_tree_keeps_every_contract() -> None:
    status, report = _lint_imports(ROOT)
    assert status == 0, report
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in report, report


def test_the_copied_tree_keeps_every_contract(source_tree: Path) -> None:
    # the baseline of the planted cases below: the copy itself is clean
    status, report = _lint_imports(source_tree)
    assert status == 0, report
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in report, report


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("edgeml/models/pipeline.py", "import edgeml.app.settings", {"layers", "edge-standalone"}),
        ("edgeml/topics/records.py", "import edgeml.models.scoring", {"layers"}),
        ("edgeml/agents/score.py", "import edgeml.app.settings", {"layers"}),
        # the worker imports models, so a simulator under models is in the worker too (and in
        # the edge agent, which imports models and topics as well)
        (
            "edgeml/models/scoring.py",
            "import edgeml.sim.generator",
            {"runtime-without-tools", "worker-without-tools", "edge-standalone"},
        ),
        (
            "edgeml/topics/catalog.py",
            "import edgeml.training",
            {"runtime-without-tools", "worker-without-tools", "edge-standalone"},
        ),
        ("edgeml/app/factory.py", "import edgeml.infra.kafka.broker", {"worker-without-tools"}),
        (
            "edgeml/models/features/extractor.py",
            "import faust",
            {"core-without-faust", "edge-standalone"},
        ),
        ("edgeml/infra/kafka/broker.py", "import edgeml.app.errors", {"infra-without-app"}),
        ("edgeml/edge/agent.py", "import faust", {"edge-standalone"}),
        ("edgeml/edge/sync.py", "import edgeml.sim.generator", {"edge-standalone"}),
    ],
)
def test_a_planted_import_breaks_its_contract(
    source_tree: Path, tmp_path: Path, module: str, planted: str, broken: set[str]
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(source_tree, tree)
    target = tree / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")

    status, report = _lint_imports(tree)

    assert status != 0, report
    for contract, name in CONTRACTS.items():
        verdict = "BROKEN" if contract in broken else "KEPT"
        assert f"{name} {verdict}" in report, f"{contract} not {verdict}: {report}"


def test_the_cli_and_the_worker_import_no_tools_at_start() -> None:
    # The contracts see every import statement, lazy ones too; the CLI is allowed the simulator
    # and the broker launcher (App -> Sim, App -> Infra) but only inside its commands, so an
    # `edgeml worker` process never loads them. Measured in a fresh interpreter.
    probe = (
        "import sys, edgeml.app.cli, edgeml.app.factory\n"
        "tools = {'edgeml.sim', 'edgeml.infra', 'edgeml.training', 'bench'}\n"
        "print(sorted(m for m in sys.modules\n"
        "             if any(m == t or m.startswith(t + '.') for t in tools)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
