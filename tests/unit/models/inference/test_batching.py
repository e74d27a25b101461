"""Request batching: concurrent calls coalesced into one, each caller gets its own rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edgeml.models.inference import BatchingBackend, InferenceEngine, TaskConfig
from edgeml.models.inference.errors import BackendError
from edgeml.models.inference.testing import any_rows


class Recorder:
    """Answers score = the first column of each row, and records every call's row count."""

    name = "rec"
    model_ref = "rec@1"
    metadata: dict = {}
    signature = any_rows()

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def infer(self, inputs):
        x = inputs["input"]
        self.calls.append(len(x))
        await asyncio.sleep(0)
        if self.fail:
            raise BackendError("joint call failed")
        return {"score": x[:, 0].astype(np.float64), "version": np.array([1])}

    async def close(self) -> None:
        pass


def rows(start: int, n: int, width: int = 3) -> dict[str, np.ndarray]:
    x = np.zeros((n, width), np.float32)
    x[:, 0] = np.arange(start, start + n)
    return {"input": x}


async def test_concurrent_calls_become_one_and_each_gets_its_rows():
    inner = Recorder()
    b = BatchingBackend(inner, window_s=0.01)
    outs = await asyncio.gather(*(b.infer(rows(10 * i, i + 1)) for i in range(5)))
    assert inner.calls == [15] and b.batches == 1
    for i, out in enumerate(outs):
        assert out["score"].tolist() == list(range(10 * i, 10 * i + i + 1))
        assert out["version"].tolist() == [1]  # not per-row: passed through whole


async def test_max_rows_flushes_at_once_and_layouts_are_not_mixed():
    inner = Recorder()
    b = BatchingBackend(inner, window_s=10.0, max_rows=4)  # the window alone would never end
    a = await asyncio.gather(b.infer(rows(0, 2)), b.infer(rows(2, 2)))
    assert inner.calls == [4] and [o["score"].tolist() for o in a] == [[0, 1], [2, 3]]
    b2 = BatchingBackend(inner, window_s=0.01)
    inner.calls.clear()
    await asyncio.gather(b2.infer(rows(0, 1)), b2.infer(rows(0, 1, width=5)), b2.infer(rows(0, 2)))
    assert sorted(inner.calls) == [1, 3]  # the width-5 call went on its own


async def test_an_error_reaches_every_member_and_a_caller_that_gave_up_is_dropped():
    b = BatchingBackend(Recorder(fail=True), window_s=0.01)
    results = await asyncio.gather(b.infer(rows(0, 1)), b.infer(rows(1, 1)), return_exceptions=True)
    assert all(isinstance(r, BackendError) for r in results)
    inner = Recorder()
    b = BatchingBackend(inner, window_s=0.05)
    gave_up = asyncio.create_task(asyncio.wait_for(b.infer(rows(0, 3)), 0.001))
    kept = asyncio.create_task(b.infer(rows(7, 1)))
    with pytest.raises(TimeoutError):
        await gave_up
    assert (await kept)["score"].tolist() == [7] and inner.calls == [1]


async def test_through_the_engine_with_failover_accounting_per_caller():
    inner = Recorder()
    engine = InferenceEngine()
    engine.add_task("t", [BatchingBackend(inner, window_s=0.01)], TaskConfig(probe_interval_s=0))
    results = await asyncio.gather(*(engine.infer("t", rows(i, 1)) for i in range(8)))
    assert [r.value.tolist() for r in results] == [[i] for i in range(8)]
    assert inner.calls == [8] and engine.tasks["t"].members[0].health.calls == 8


def test_bad_settings():
    with pytest.raises(ValueError, match="max_rows"):
        BatchingBackend(Recorder(), max_rows=0)
