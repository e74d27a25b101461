"""Default paths come from `EDGEML_HOME` or the working directory, never from the install
location; the shipped models reach a fresh home by copy; `edgeml models` / `edgeml optimize`
use `Settings().registry_root` and write nothing into the package folder (issue #10, item 6)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgeml.app.cli.optimize as optimize_cli
from edgeml.app.cli import cli
from edgeml.app.settings import Settings
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry
from edgeml.models.shipped import SHIPPED_ROOT, seed_registry

ROOT = Path(__file__).resolve().parents[2]
HOME_PATHS = {
    "data_dir": ("var", "worker-data"),
    "registry_root": ("models", "artifacts"),
    "broker_home": ("var", "kafka"),
    "kafka_cache": (".cache", "kafka"),
}


@pytest.fixture(autouse=True)
def _no_path_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOME", "DATA_DIR", "REGISTRY_ROOT", "BROKER_HOME", "KAFKA_CACHE"):
        monkeypatch.delenv(f"EDGEML_{name}", raising=False)


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: equal before and after = untouched."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def _shipped_copy(root: Path) -> Path:
    shutil.copytree(SHIPPED_ROOT, root)
    return root


# --- Settings ---------------------------------------------------------------------------------


def test_defaults_live_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == tmp_path
    for field, parts in HOME_PATHS.items():
        assert getattr(settings, field) == tmp_path.joinpath(*parts), field
    assert settings.seeds_registry()


def test_edgeml_home_moves_every_default_and_anchors_relative_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEML_HOME", "state")  # relative: against the working directory
    monkeypatch.setenv("EDGEML_DATA_DIR", "rocks")  # relative: against the home
    monkeypatch.setenv("EDGEML_KAFKA_CACHE", str(tmp_path / "shared-cache"))  # absolute: kept
    settings = Settings()
    home = tmp_path / "state"
    assert settings.home == home
    assert settings.data_dir == home / "rocks"
    assert settings.registry_root == home / "models" / "artifacts"
    assert settings.broker_home == home / "var" / "kafka"
    assert settings.kafka_cache == tmp_path / "shared-cache"


def test_from_the_checkout_the_defaults_are_the_readme_folders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    settings = Settings()
    assert settings.data_dir == ROOT / "var" / "worker-data"
    assert settings.registry_root.resolve() == SHIPPED_ROOT  # the checkout serves in place
    assert settings.broker_home == ROOT / "var" / "kafka"
    assert settings.kafka_cache == ROOT / ".cache" / "kafka"
    assert seed_registry(settings.registry_root) == []


@pytest.mark.parametrize(
    ("how", "expected"),
    [("default", True), ("env", False), ("argument", False), ("copy", False)],
)
def test_only_the_default_registry_root_is_seeded(
    how: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if how == "env":
        monkeypatch.setenv("EDGEML_REGISTRY_ROOT", str(tmp_path / "mine"))
    settings = Settings(registry_root=tmp_path / "mine") if how == "argument" else Settings()
    if how == "copy":
        settings = settings.model_copy(update={"registry_root": tmp_path / "mine"})
    assert settings.seeds_registry() is expected


# --- seed_registry ----------------------------------------------------------------------------


def test_seeding_copies_the_shipped_models_once_and_serves_them(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    assert seed_registry(root) == [FAILURE_MODEL_ID]
    assert seed_registry(root) == []
    registry = ModelRegistry(root)
    shipped = ModelRegistry(SHIPPED_ROOT)
    assert registry.promoted_version(FAILURE_MODEL_ID) == shipped.promoted_version(FAILURE_MODEL_ID)
    assert registry.verify(FAILURE_MODEL_ID).sha256 == shipped.manifest(FAILURE_MODEL_ID).sha256
    assert [p.name for p in root.iterdir()] == [FAILURE_MODEL_ID]  # no staging left behind


def test_seeding_keeps_a_model_the_root_already_has(tmp_path: Path) -> None:
    root = _shipped_copy(tmp_path / "registry")
    marker = root / FAILURE_MODEL_ID / "PROMOTED"
    marker.write_text("7\n")  # the operator's promotion there wins over what ships
    assert seed_registry(root) == []
    assert marker.read_text() == "7\n"


def test_seeded_copies_are_writable_when_the_install_is_read_only(tmp_path: Path) -> None:
    shipped = _shipped_copy(tmp_path / "site-packages-artifacts")
    for folder, _dirs, files in os.walk(shipped, topdown=False):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)
    try:
        root = tmp_path / "home-registry"
        assert seed_registry(root, shipped) == [FAILURE_MODEL_ID]
        registry = ModelRegistry(root)
        version = registry.promoted_version(FAILURE_MODEL_ID)
        assert version is not None
        registry.promote(FAILURE_MODEL_ID, version)  # rewrites PROMOTED next to the copy
        assert (root / FAILURE_MODEL_ID).stat().st_mode & stat.S_IWUSR
    finally:
        for folder, _dirs, _files in os.walk(shipped):
            os.chmod(folder, 0o755)


# --- the CLI ----------------------------------------------------------------------------------


def test_models_and_optimize_use_edgeml_registry_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _shipped_copy(tmp_path / "registry")
    monkeypatch.setenv("EDGEML_REGISTRY_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    package_before = _tree(SHIPPED_ROOT)
    runner = CliRunner()

    listed = runner.invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["root"] == str(root)

    optimized = runner.invoke(
        cli, ["optimize", FAILURE_MODEL_ID, "--steps", "compress", "--timing-s", "0.01", "--json"]
    )
    assert optimized.exit_code == 0, optimized.output
    registered = json.loads(optimized.output)["registered"]
    assert registered is not None
    new_version = registered.split("@")[1]
    assert (root / FAILURE_MODEL_ID / new_version / "manifest.json").is_file()

    shown = runner.invoke(cli, ["models", "show", FAILURE_MODEL_ID, "-v", new_version])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["compression"] == "zstd"
    assert _tree(SHIPPED_ROOT) == package_before


def test_a_fresh_home_lists_the_shipped_model_from_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEML_HOME", str(tmp_path))
    package_before = _tree(SHIPPED_ROOT)
    result = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert listing["root"] == str(tmp_path / "models" / "artifacts")
    assert [(m["model_id"], m["promoted"]) for m in listing["models"]] == [
        (FAILURE_MODEL_ID, False),  # @1, kept for rollback
        (FAILURE_MODEL_ID, True),  # @2
    ]
    assert (tmp_path / "models" / "artifacts" / FAILURE_MODEL_ID / "PROMOTED").is_file()
    assert _tree(SHIPPED_ROOT) == package_before


def test_optimize_without_the_train_extra_says_which_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optimize_cli, "TRAIN_MODULES", ("sklearn", "not_installed_module"))
    root = _shipped_copy(tmp_path / "registry")
    result = CliRunner().invoke(cli, ["optimize", FAILURE_MODEL_ID, "--root", str(root)])
    assert isinstance(result.exception, optimize_cli.MissingExtra)
    assert "not_installed_module" in str(result.exception)
    assert "edgeml[cli,train]" in str(result.exception)
    assert sorted(p.name for p in (root / FAILURE_MODEL_ID).iterdir()) == ["1", "2", "PROMOTED"]
