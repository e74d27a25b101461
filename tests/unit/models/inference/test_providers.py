"""Execution-provider lists: resolution, CPU fallback (logged once, counted), backends on them.

This environment has the plain `onnxruntime` (CPU); OpenVINO's plugin is checked in its own
venv by tests/integration/test_openvino_provider.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeml.models.inference import providers as prov
from edgeml.models.inference.loading import onnx_replicas
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry

CPU = "CPUExecutionProvider"
OV = "OpenVINOExecutionProvider"


@pytest.fixture(autouse=True)
def fresh_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "FALLBACKS", type(prov.FALLBACKS)())
    monkeypatch.setattr(prov, "_LOGGED", set())


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


def test_no_wish_is_cpu_only() -> None:
    assert prov.resolve(None, available=[CPU]).names == (CPU,)
    assert prov.resolve([], available=[OV, CPU]).names == (CPU,)


def test_order_aliases_options_and_cpu_last() -> None:
    choice = prov.resolve(
        [("openvino", {"device_type": "CPU"}), "cuda", "OpenVINOExecutionProvider"],
        available=["CUDAExecutionProvider", OV, CPU],
    )
    assert choice.names == (OV, "CUDAExecutionProvider", CPU)
    names, options = choice.for_ort()
    assert names == list(choice.names) and options == [{"device_type": "CPU"}, {}, {}]
    assert choice.missing == ()


def test_a_missing_provider_falls_back_to_cpu_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=prov.__name__):
        for _ in range(3):
            choice = prov.resolve(["tensorrt", "cuda"], available=[CPU])
    assert choice.names == (CPU,)
    assert choice.missing == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert prov.FALLBACKS[("TensorrtExecutionProvider", "missing")] == 3
    assert prov.FALLBACKS[("CUDAExecutionProvider", "missing")] == 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one line per provider, however many sessions ask
    assert "TensorrtExecutionProvider missing" in lines[0] and "falling back" in lines[0]


def test_an_unknown_provider_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown execution provider 'gpu'; choose from: .*cuda"):
        prov.resolve(["gpu"], available=[CPU])


def test_a_provider_the_session_did_not_start_is_logged_and_counted(registry) -> None:
    # this CPU build does not have CUDA: pretend resolution thought it had, as ORT's own
    # silent fallback does when onnxruntime-gpu finds no GPU
    choice = prov.resolve(["cuda"], available=["CUDAExecutionProvider", CPU])
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # ORT's own warning
        session, took = prov.provider_session(registry.model_bytes("failure-gbm"), choice)
    assert session.get_providers() == [CPU]
    assert took.names == (CPU,) and took.missing == ("CUDAExecutionProvider",)
    assert prov.FALLBACKS[("CUDAExecutionProvider", "not started")] == 1


def test_a_provider_that_refuses_the_graph_is_dropped(registry, monkeypatch) -> None:
    real = ort.InferenceSession
    seen: list[list[str]] = []

    def session(model, sess_options=None, providers=None, provider_options=None):
        seen.append(list(providers))
        if OV in providers:
            raise RuntimeError("[OpenVINO-EP] Exception while Loading Network\nCheck failed")
        return real(model, sess_options=sess_options, providers=[CPU])

    monkeypatch.setattr(ort, "InferenceSession", session)
    choice = prov.resolve(["openvino"], available=[OV, CPU])
    _, took = prov.provider_session(registry.model_bytes("failure-gbm"), choice)
    assert seen == [[OV, CPU], [CPU]]
    assert took.names == (CPU,) and took.missing == (OV,)
    assert prov.FALLBACKS[(OV, "failed")] == 1


def test_replicas_on_a_missing_provider_serve_the_cpu_scores(registry) -> None:
    x, _ = registry.holdout("failure-gbm")
    want = registry.load("failure-gbm").predict(x)
    backends = onnx_replicas(registry, "failure-gbm", 2, providers=["openvino", "cpu"])
    assert [b.metadata["providers"] for b in backends] == [[CPU], [CPU]]
    for backend in backends:
        got = backend.predict({backend.signature.inputs[0].name: x})["score"]
        np.testing.assert_array_equal(got, want)
    assert prov.FALLBACKS[(OV, "missing")] == 1


def test_cpu_only_lists_keep_the_registry_session(registry) -> None:
    shared = registry.load("failure-gbm").session
    (backend,) = onnx_replicas(registry, "failure-gbm", 1, providers=["cpu"])
    x, _ = registry.holdout("failure-gbm")
    assert backend.metadata["providers"] == [CPU]
    np.testing.assert_array_equal(
        backend.predict({"input": x})["score"], registry.load("failure-gbm").predict(x)
    )
    assert registry.sessions.created == 1 and shared is registry.load("failure-gbm").session


def test_node_placement_counts_nodes_per_provider(registry) -> None:
    x, _ = registry.holdout("failure-gbm")
    placement = prov.node_placement(registry.model_bytes("failure-gbm"), None, x[:4])
    assert placement == {CPU: 1}  # one TreeEnsembleClassifier node
