"""`--providers` of `edgeml optimize` and `edgeml serve`: bad names are refused in one line
(exit 2) before anything runs; a provider this onnxruntime build lacks falls back to CPU and
is reported (optimize's report, serve's ready line and `/metrics`), never a crash.

The console entry (`app.cli.main`) runs in-process (`invoke_cli`); this build has CPU only,
and `available_providers` is pinned to CPU so `cuda` is missing wherever the test runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.cli.providers import parse_providers
from edgeml.app.settings import Settings
from edgeml.models.inference import providers as ort_providers
from edgeml.models.optimize import zoo
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry

Invoke = Callable[..., tuple[int, str, str]]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort_providers, "available_providers", lambda: [CPU])


@pytest.fixture(scope="module")
def demo() -> zoo.Demo:
    return zoo.train("mlp-tiny", n_train=600, n_holdout=400)


def _error(err: str) -> str:
    """The text after `<command>: error: ` on the single stderr line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0].split(": error: ", 1)[1]


def test_parse_providers_takes_commas_and_repeats() -> None:
    assert parse_providers(["openvino, cpu", "cuda"]) == ["openvino", "cpu", "cuda"]
    assert parse_providers([]) == []
    assert parse_providers(["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]


BAD = [
    (["--providers", "gpu"], "Invalid value for --providers: unknown execution provider 'gpu'"),
    (["--providers", "cpu,nope"], "Invalid value for --providers: unknown execution provider"),
    (["--providers", " , "], "Invalid value for --providers: empty; give at least one provider"),
]


@pytest.mark.parametrize("command", [["optimize", "mlp"], ["serve"]], ids=["optimize", "serve"])
@pytest.mark.parametrize(("args", "message"), BAD, ids=["gpu", "nope", "empty"])
def test_bad_provider_names_exit_2_in_one_line(
    invoke_cli: Invoke, settings: Settings, command: list[str], args: list[str], message: str
) -> None:
    code, out, err = invoke_cli(settings, *command, *args, "--root", "/nonexistent")
    assert (code, out) == (2, "")
    text = _error(err)
    assert text.startswith(message)
    if "unknown" in message:
        assert "choose from: coreml, cpu, cuda, dml, openvino, tensorrt" in text


def test_optimize_reports_per_provider_and_a_missing_one(
    invoke_cli: Invoke, settings: Settings, demo: zoo.Demo, tmp_path: Path, cpu_only: None
) -> None:
    registry = ModelRegistry(tmp_path / "artifacts", sessions=SessionCache())
    zoo.register_demo(registry, demo, "mlp")
    args = ["optimize", "mlp", "--root", str(registry.root), "--steps", "dynamic",
            "--timing-s", "0.001", "--no-register"]  # fmt: skip
    code, out, _ = invoke_cli(settings, *args, "--providers", "cpu", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["providers"] == ["cpu"] and data["provider_fallbacks"] == {}
    assert data["steps"][0]["providers"]["cpu"]["p50_us"] > 0
    code, out, err = invoke_cli(settings, *args, "--providers", "cuda,cpu")
    assert code == 0, out + err
    fallbacks = [line for line in out.splitlines() if line.startswith("fallback:")]
    assert len(fallbacks) == 1
    assert fallbacks[0].startswith(f"fallback: cuda: {CUDA} is not in this onnxruntime build")
    assert "providers: cpu (decisions on cpu)" in out


def test_serve_runs_its_sessions_on_the_list(
    invoke_cli: Invoke,
    settings: Settings,
    tmp_path: Path,
    cpu_only: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiohttp import web

    from edgeml.app import serve as serve_module

    root = tmp_path / "artifacts"
    seed_registry(root)
    built: list[Any] = []
    real_build = serve_module.build_server

    def build(*args: Any, **kwargs: Any) -> Any:
        built.append(real_build(*args, **kwargs))
        return built[-1]

    def run_app(app: Any, *, print: Callable[[str], None], **_: Any) -> None:
        print("")  # what aiohttp does once it listens; the test does not bind a port

    monkeypatch.setattr(serve_module, "build_server", build)
    monkeypatch.setattr(web, "run_app", run_app)
    before = ort_providers.FALLBACKS[(CUDA, "missing")]
    code, out, err = invoke_cli(
        settings, "serve", "--root", str(root), "-m", "failure-gbm", "--providers", "cuda,cpu"
    )
    assert code == 0, out + err
    assert re.search(r"listening on http://127\.0\.0\.1:8000 \(failure-gbm@\w+ on cpu\)$", out)
    (server,) = built
    assert server.models["failure-gbm"].providers == (CPU,)
    assert ort_providers.FALLBACKS[(CUDA, "missing")] == before + 1
    metrics = server.metrics.exposition().decode()
    assert f'edgeml_provider_fallbacks_total{{provider="{CUDA}",reason="missing"}}' in metrics
