"""The optimizer per execution provider: one latency / score-delta entry per resolved provider
on every measured step, a missing or refusing provider reported as fallen back, never an error.

This environment has CPU only, so the other providers are made "available" by patching what
`models.inference.providers` sees: a provider named but absent from the build, and one whose
session is a CPU session that claims to run on it (to exercise the measured columns). No
timing assertions: figures only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeml.models.inference import providers as ort_providers
from edgeml.models.optimize import zoo
from edgeml.models.optimize.pipeline import optimize
from edgeml.models.optimize.report import OptimizationReport
from edgeml.models.registry import ModelRegistry, SessionCache

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"


@pytest.fixture(scope="module")
def demo() -> zoo.Demo:
    return zoo.train("mlp-tiny", n_train=600, n_holdout=400)


@pytest.fixture
def registry(tmp_path: Path, demo: zoo.Demo) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "artifacts", sessions=SessionCache())
    zoo.register_demo(registry, demo, "mlp")
    return registry


def _optimize(registry: ModelRegistry, providers: list[str]) -> OptimizationReport:
    """The fp32 baseline and one step, briefly timed, nothing registered."""
    return optimize(
        registry, "mlp", steps=["dynamic"], register=False, timing_s=0.01, rounds=1,
        providers=providers,
    )  # fmt: skip


def test_cpu_entry_is_the_main_measurement(registry: ModelRegistry) -> None:
    report = _optimize(registry, ["cpu"])
    assert report.providers == ["cpu"] and report.provider_fallbacks == {}
    for step in report.steps:
        assert list(step.providers) == ["cpu"]
        cpu = step.providers["cpu"]
        assert (cpu.p50_us, cpu.quality_delta) == (step.p50_us, step.quality_delta)
    data = report.to_dict()
    assert data["steps"][0]["providers"]["cpu"]["session_providers"] == [CPU]
    assert "- providers: cpu (decisions on cpu)" in report.to_markdown()


def test_missing_provider_is_reported_not_raised(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort_providers, "available_providers", lambda: [CPU])
    before = ort_providers.FALLBACKS[("CUDAExecutionProvider", "missing")]
    report = _optimize(registry, ["cuda", "cpu"])
    assert report.providers == ["cpu"]
    assert list(report.provider_fallbacks) == ["cuda"]
    assert "not in this onnxruntime build" in report.provider_fallbacks["cuda"]
    assert ort_providers.FALLBACKS[("CUDAExecutionProvider", "missing")] == before + 1
    assert report.provider_lines()[1].startswith("fallback: cuda: CUDAExecutionProvider")


def test_unknown_provider_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="unknown execution provider 'gpu'"):
        _optimize(registry, ["gpu"])


class _Claims:
    """A CPU session that reports running on `providers` (ORT has no fake provider)."""

    def __init__(self, session: Any, providers: list[str]) -> None:
        self._session, self._providers = session, providers

    def get_providers(self) -> list[str]:
        return self._providers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_each_resolved_provider_gets_its_columns(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ort_providers.provider_session

    def claiming(model_bytes: bytes, choice: Any, **kw: Any) -> tuple[Any, Any]:
        names = list(choice.names)
        cpu_only = ort_providers.resolve([CPU], available=[CPU])
        session, _ = real(model_bytes, cpu_only, **kw)
        return _Claims(session, names), choice

    monkeypatch.setattr(ort_providers, "available_providers", lambda: [OPENVINO, CPU])
    monkeypatch.setattr(ort_providers, "provider_session", claiming)
    report = _optimize(registry, ["openvino"])
    assert report.providers == ["openvino", "cpu"] and report.provider_fallbacks == {}
    for step in report.steps:
        assert list(step.providers) == ["openvino", "cpu"]
        entry = step.providers["openvino"]
        assert entry.session_providers == [OPENVINO, CPU]
        assert entry.p50_us and entry.p99_us and entry.batch64_per_s
        # the same CPU kernels underneath: the provider's scores are the CPU session's
        assert entry.quality_delta == step.quality_delta
        assert entry.max_abs_diff == step.max_abs_diff
    header = report.rows()[0]
    assert header[-3:] == ["p50 µs openvino", "Δauc openvino", "note"]


def test_provider_that_does_not_start_falls_back(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort_providers, "available_providers", lambda: [OPENVINO, CPU])
    # ORT itself runs the session on CPU alone (the build has no OpenVINO): "not started"
    with pytest.warns(UserWarning, match="not in available provider names"):
        report = _optimize(registry, ["cpu", "openvino"])
    assert report.providers == ["cpu", "openvino"]
    entry = report.baseline.providers["openvino"]
    assert entry.p50_us is None and entry.session_providers == [CPU]
    assert report.provider_fallbacks["openvino"].startswith(f"{OPENVINO} fell back")
    assert report.rows()[1][-3:-1] == ["fell back", ""]
