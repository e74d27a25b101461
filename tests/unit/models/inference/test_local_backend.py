"""In-process backends: a blocking call runs off the event loop; a hung replica fails fast;
ONNX replicas from the registry answer what the registry's own session answers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeml.models.inference import (
    BackendOverloaded,
    InferenceEngine,
    LocalBackend,
    TaskConfig,
    golden_set,
    onnx_replicas,
)
from edgeml.models.inference.testing import any_rows
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry

X = {"input": np.zeros((2, 3), np.float32)}


def blocking_backend(
    release: threading.Event, seen: list[bool], wait_s: float = 5.0
) -> LocalBackend:
    def predict(inputs):
        # blocks its thread until the loop has ticked enough (or wait_s pass: the loop was blocked)
        seen.append(release.wait(timeout=wait_s))
        return {"score": np.zeros(len(inputs["input"]))}

    return LocalBackend("blocking", "blocking@1", predict, any_rows())


async def test_a_blocking_predict_does_not_block_the_event_loop():
    release = threading.Event()
    seen: list[bool] = []
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while ticks < 50:
            await asyncio.sleep(0.001)
            ticks += 1
        release.set()

    backend = blocking_backend(release, seen)
    result, _ = await asyncio.gather(backend.infer(X), ticker())
    # the ticker ran 50 times *while* predict was blocked waiting for it: the loop kept turning
    assert seen == [True] and ticks == 50 and result["score"].shape == (2,)
    await backend.close()


def test_the_same_predict_on_the_loop_would_block_it():
    """The control for the test above: called on the loop, the ticker never runs."""
    release = threading.Event()
    seen: list[bool] = []
    backend = blocking_backend(release, seen, wait_s=0.05)

    async def on_loop() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker is scheduled
        backend.predict(X)  # the same function, called on the loop as a bare session.run is
        count = ticks
        task.cancel()
        return count

    assert asyncio.run(on_loop()) == 0 and seen == [False]


async def test_a_hung_replica_fails_new_calls_at_once_and_the_engine_fails_over():
    stuck = threading.Event()

    def hang(inputs):
        stuck.wait(timeout=10.0)
        return {"score": np.zeros(len(inputs["input"]))}

    hung = LocalBackend("hung", "m@1", hang, any_rows(), max_pending=2)
    ok = LocalBackend("ok", "m@1", lambda t: {"score": np.ones(len(t["input"]))}, any_rows())
    first = [asyncio.create_task(hung.infer(X)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(BackendOverloaded, match="2 calls pending"):
        await hung.infer(X)
    engine = InferenceEngine()
    engine.add_task("t", [hung, ok], TaskConfig(timeout_s=0.05))
    result = await engine.infer("t", X)
    assert result.ok and result.value.tolist() == [1.0, 1.0]
    assert "BackendOverloaded" in result.calls[0].error
    stuck.set()
    await asyncio.gather(*first)
    assert hung.pending == 0
    await engine.close()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


async def test_onnx_replicas_answer_the_registry_session_scores(registry):
    handle = registry.promoted_handle()
    x, _ = registry.holdout("failure-gbm")
    replicas = onnx_replicas(registry, "failure-gbm", 3)
    assert [b.name for b in replicas] == [f"{handle.ref}#{i}" for i in range(3)]
    assert replicas[0].metadata["quality"] == registry.manifest("failure-gbm").metrics["roc_auc"]
    golden = golden_set(registry, "failure-gbm")
    assert golden is not None and golden.rows == 32
    engine = InferenceEngine()
    engine.add_task("failure", replicas, TaskConfig(probe_interval_s=0), golden=golden)
    probes = await engine.start()
    assert all(p.ok for p in probes["failure"])
    result = await engine.infer("failure", {"input": x[:500]})
    np.testing.assert_array_equal(result.value, handle.predict(x[:500]))
    await engine.close()
