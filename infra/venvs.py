"""Side environments for execution providers that cannot share the main venv.

`onnxruntime-openvino` (and `onnxruntime-gpu`) install the same `onnxruntime` module as the
plain `onnxruntime` wheel the project depends on, so one environment holds one of them. The
OpenVINO check therefore runs in its own venv under `.cache/` (about 440 MB, built once, then
reused: a venv whose probe passes is never rebuilt):

    python -m edgeml.infra.venvs openvino        # prints the venv's python; `make openvino-venv`

The venv gets the provider wheel, the project's core dependencies but `onnxruntime`
(`core_requirements`, read from pyproject.toml) and aiohttp (`edgeml.models.inference`
imports it); the checkout goes on `PYTHONPATH`, so the code under test is the working tree's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SIDE_VENVS", "SideVenv", "VenvError", "core_requirements", "ensure_venv"]

ROOT = Path(__file__).resolve().parents[1]


class VenvError(RuntimeError):
    """A side venv could not be built or does not work (the message says which step)."""


def core_requirements(exclude: frozenset[str] = frozenset({"onnxruntime"})) -> tuple[str, ...]:
    """The project's own runtime dependencies (pyproject `dependencies`) but `exclude`: what
    the checkout's `edgeml.models` imports, so the side venv follows the project as it grows."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    out = []
    for req in data["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", req)
        if name is not None and name.group(0).lower() not in exclude:
            out.append(req)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SideVenv:
    """A named venv: where, what to install besides the core dependencies, and a probe that
    must print `ok` (run with the checkout on PYTHONPATH)."""

    name: str
    requirements: tuple[str, ...]
    probe: str

    def path(self, cache: Path) -> Path:
        return cache / f"venv-{self.name}"

    def all_requirements(self) -> tuple[str, ...]:
        return (*self.requirements, *core_requirements())


SIDE_VENVS = {
    "openvino": SideVenv(
        "openvino",
        ("onnxruntime-openvino==1.24.1", "aiohttp>=3.9,<4"),
        "import onnxruntime as o, edgeml.models.inference; "
        "print('ok' if 'OpenVINOExecutionProvider' in o.get_available_providers() else 'no')",
    ),
}


def _works(python: Path, probe: str) -> bool:
    if not python.exists():
        return False
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=300, env=env
    )
    return done.returncode == 0 and done.stdout.strip().endswith("ok")


def _run(step: list[str], target: Path, timeout_s: float) -> None:
    try:
        done = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise VenvError(f"{' '.join(step[:4])} ran over {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise VenvError(f"building {target} failed at {' '.join(step[:4])}: {' | '.join(tail)}")


def ensure_venv(name: str, cache: Path | None = None, *, timeout_s: float = 900.0) -> Path:
    """The python of side venv `name` under `cache` (default `.cache/`), built when missing,
    topped up (pip install into it) when its probe fails, e.g. after the project gained a
    dependency; raises VenvError with pip's last lines when that does not make it work."""
    spec = SIDE_VENVS.get(name)
    if spec is None:
        raise VenvError(f"unknown side venv {name!r}; known: {', '.join(SIDE_VENVS)}")
    target = spec.path(cache or ROOT / ".cache")
    python = target / "bin" / "python"
    if _works(python, spec.probe):
        return python
    install = ["-m", "pip", "install", "-q", *spec.all_requirements()]
    if python.exists():  # an existing venv: install what is missing (pip skips the rest)
        _run([str(python), *install], target, timeout_s)
    else:
        staging = target.with_name(target.name + ".build")
        shutil.rmtree(staging, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(staging)], target, timeout_s)
        _run([str(staging / "bin" / "python"), *install], target, timeout_s)
        # built aside, then moved in whole: a reader never sees half a venv (only `python -m`
        # is used, which works after the move; console scripts would name the old path)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    if not _works(python, spec.probe):
        raise VenvError(f"{target} was built but its probe fails: {spec.probe}")
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build (or reuse) a side venv; print its python.")
    parser.add_argument("name", choices=sorted(SIDE_VENVS))
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        print(ensure_venv(args.name, args.cache))
    except VenvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
