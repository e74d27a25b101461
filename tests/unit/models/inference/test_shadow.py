"""Shadow scoring: the challenger never delays or fails the champion's path; drops are counted."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from edgeml.models.inference.shadow import ShadowScorer, pump
from edgeml.models.registry import ModelHandle, ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry
from edgeml.topics.records import ModelComparison


class Fixed:
    """A model answering `scale * row sum`, or raising / blocking / misbehaving on demand."""

    def __init__(self, ref: str, scale: float = 1.0, mode: str = "ok") -> None:
        self.ref, self.scale, self.mode = ref, scale, mode
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.entered.set()
        if self.mode == "raise":
            raise RuntimeError("challenger broke")
        if self.mode == "hang":
            self.release.wait()
        if self.mode == "nan":
            return np.full(len(features), np.nan)
        if self.mode == "short":
            return np.zeros(len(features) - 1)
        return self.scale * features.sum(axis=1)


def batch(n: int, start: int = 0) -> tuple[np.ndarray, list[tuple[str, int, float]]]:
    x = np.arange(start, start + n * 3, dtype=np.float32).reshape(n, 3) / 100.0
    keys = [(f"dev-{i % 2}", start + i, 1000.0 + start + i) for i in range(n)]
    return x, keys


@pytest.fixture
def closing():
    made: list[ShadowScorer] = []

    def make(*args, **kwargs) -> ShadowScorer:
        shadow = ShadowScorer(*args, **kwargs)
        made.append(shadow)
        return shadow

    yield make
    for shadow in made:
        shadow.close()


def test_comparisons_hold_both_models_scores_per_row(closing):
    champion, challenger = Fixed("m@1"), Fixed("m@2", scale=2.0)
    shadow = closing(challenger, champion=champion)
    x, keys = batch(4)
    assert shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    assert (comparison.champion, comparison.challenger) == ("m@1", "m@2")
    assert [r.seq for r in comparison.rows] == [0, 1, 2, 3]
    assert [r.device_id for r in comparison.rows] == ["dev-0", "dev-1", "dev-0", "dev-1"]
    np.testing.assert_allclose([r.champion for r in comparison.rows], x.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(
        [r.challenger for r in comparison.rows], 2 * x.sum(axis=1), rtol=1e-6
    )
    assert comparison.champion_s is not None and comparison.champion_s >= 0
    assert comparison.challenger_s is not None and comparison.challenger_error is None
    assert shadow.stats.compared == 1 and shadow.stats.rows == 4
    assert shadow.drain() == []


def test_given_champion_scores_are_used_and_the_champion_is_not_called(closing):
    challenger = Fixed("m@2")
    shadow = closing(challenger, champion="m@1")
    x, keys = batch(3)
    assert shadow.submit(x, np.array([0.1, 0.2, 0.3]), keys=keys, champion_seconds=0.004)
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    assert [r.champion for r in comparison.rows] == [0.1, 0.2, 0.3]
    assert comparison.champion_s == 0.004 and comparison.champion == "m@1"


def test_the_caller_may_reuse_its_buffer_after_submit(closing):
    challenger = Fixed("m@2", mode="hang")
    shadow = closing(challenger, champion=Fixed("m@1"))
    x, keys = batch(2)
    expected = x.sum(axis=1).copy()
    shadow.submit(x, keys=keys)
    x[:] = -1.0  # the worker's next batch overwrites it while the challenger still works
    challenger.release.set()
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    np.testing.assert_allclose([r.challenger for r in comparison.rows], expected, rtol=1e-6)


def test_a_hung_challenger_never_blocks_submit_and_drops_are_counted(closing):
    challenger = Fixed("m@2", mode="hang")
    shadow = closing(challenger, champion=Fixed("m@1"), max_pending=3)
    x, keys = batch(5)
    assert shadow.submit(x, keys=keys)
    assert challenger.entered.wait(10.0)  # the thread holds batch 1 in the hung call
    results: list[bool] = []
    submitter = threading.Thread(
        target=lambda: results.extend(shadow.submit(x, keys=keys) for _ in range(6))
    )
    submitter.start()
    submitter.join(10.0)
    assert not submitter.is_alive(), "submit blocked behind a hung challenger"
    assert results == [True, True, True, False, False, False]
    assert (shadow.stats.dropped, shadow.stats.dropped_rows) == (3, 15)
    challenger.release.set()
    assert shadow.wait_idle(10.0)
    assert len(shadow.drain()) == 4 and shadow.stats.compared == 4


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("raise", "RuntimeError: challenger broke"),
        ("nan", "ValueError: answered non-finite scores"),
        ("short", "ValueError: answered 3 scores for 4 rows"),
    ],
)
def test_a_failing_challenger_gives_a_comparison_with_its_error(closing, mode, error):
    shadow = closing(Fixed("m@2", mode=mode), champion=Fixed("m@1"))
    x, keys = batch(4)
    assert shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    assert comparison.challenger_error == error
    assert all(r.challenger is None for r in comparison.rows)
    assert [r.champion for r in comparison.rows] == pytest.approx(x.sum(axis=1).tolist())
    assert shadow.stats.challenger_errors == 1


def test_a_failing_champion_rescore_skips_the_batch(closing):
    shadow = closing(Fixed("m@2"), champion=Fixed("m@1", mode="raise"))
    x, keys = batch(2)
    assert shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    assert shadow.drain() == [] and shadow.stats.champion_errors == 1


@pytest.mark.parametrize(
    ("features", "scores", "n_keys"),
    [
        (np.zeros((3, 2)), None, 2),  # keys do not match the rows
        (np.zeros(3), None, 3),  # not a matrix
        (np.zeros((3, 2)), np.zeros(2), 3),  # scores do not match the rows
        ("not an array", None, 1),
    ],
)
def test_malformed_submits_are_refused_never_raised(closing, features, scores, n_keys):
    shadow = closing(Fixed("m@2"), champion=Fixed("m@1"))
    keys = [("d", i, float(i)) for i in range(n_keys)]
    assert shadow.submit(features, scores, keys=keys) is False
    assert shadow.stats.refused == 1 and shadow.stats.submitted == 0


def test_scores_are_required_without_a_champion_model(closing):
    shadow = closing(Fixed("m@2"), champion="m@1")
    x, keys = batch(2)
    assert shadow.submit(x, keys=keys) is False and shadow.stats.refused == 1


def test_an_undrained_outbox_drops_new_comparisons(closing):
    shadow = closing(Fixed("m@2"), champion=Fixed("m@1"), max_outbox=2)
    for i in range(4):
        x, keys = batch(1, start=i)
        assert shadow.submit(x, keys=keys)
        assert shadow.wait_idle(10.0)
    assert [c.rows[0].seq for c in shadow.drain()] == [0, 1]
    assert shadow.stats.outbox_dropped == 2


def test_after_close_nothing_is_taken(closing):
    shadow = closing(Fixed("m@2"), champion=Fixed("m@1"))
    shadow.close()
    x, keys = batch(1)
    assert shadow.submit(x, keys=keys) is False


def test_wire_round_trip(closing):
    shadow = closing(Fixed("m@2", mode="raise"), champion=Fixed("m@1"))
    x, keys = batch(2)
    shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    wire = orjson.loads(orjson.dumps(comparison.to_wire()))
    assert ModelComparison.from_wire(wire) == comparison


async def test_pump_sends_keyed_json_survives_a_failed_send_and_drains_on_stop(closing):
    shadow = closing(Fixed("m@2"), champion=Fixed("m@1"))
    for i in range(3):
        x, keys = batch(2, start=10 * i)
        shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    sent: list[tuple[bytes, dict]] = []
    calls = 0

    async def send(key: bytes, value: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("broker away")
        sent.append((key, orjson.loads(value)))

    stop = asyncio.Event()
    stop.set()  # one pass: whatever is drained is sent before it returns
    assert await pump(shadow, send, stop=stop) == 2
    assert [k for k, _ in sent] == [b"m@2", b"m@2"]
    assert [v["rows"][0]["seq"] for _, v in sent] == [0, 20]


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


def test_registry_versions_shadow_each_other_with_their_own_scores(registry, closing):
    champion = registry.promoted_handle()
    assert champion is not None
    other = next(
        v for v in registry.versions("failure-gbm") if v != champion.current.manifest.version
    )
    inputs = champion.current.manifest.inputs
    challenger = ModelHandle(registry.load("failure-gbm", other, expected_inputs=inputs))
    x, _ = registry.holdout("failure-gbm")
    x = x[:64]
    keys = [("dev", i, float(i)) for i in range(len(x))]
    shadow = closing(challenger, champion=champion)
    assert shadow.submit(x, keys=keys)
    assert shadow.wait_idle(10.0)
    (comparison,) = shadow.drain()
    assert comparison.champion == champion.ref and comparison.challenger == challenger.ref
    assert [r.champion for r in comparison.rows] == champion.predict(x).tolist()
    assert [r.challenger for r in comparison.rows] == challenger.predict(x).tolist()
    assert comparison.champion != comparison.challenger
