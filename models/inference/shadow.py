"""Shadow scoring: a challenger model version scores the champion's readings off the critical path.

    challenger = ModelHandle(registry.load("failure-gbm", "3", expected_inputs=inputs))
    shadow = ShadowScorer(challenger, champion=handle)
    shadow.submit(features, keys=[(device_id, seq, ts), ...])        # never blocks, never raises
    await pump(shadow, send)          # ModelComparison records -> `model-comparisons`

Why a thread and a bounded queue: the worker scores a batch synchronously on its event loop,
so anything the challenger costs there (a 1 ms call, a hung session, an exception) would be the
champion's cost too. `submit` only copies the batch (60 KB for 500 rows of 29 features) and
`put_nowait`s it; one daemon thread runs the models. When that thread falls behind (a slow or
hung challenger), the queue is full and `submit` drops the batch and counts it (`stats`):
shadow results are a sample, predictions are not. Comparisons wait in a bounded outbox until
`drain` (or `pump`) takes them; an outbox nobody drains drops new records, counted too.

Champion scores: with `champion=` the shadow thread re-scores each batch with the champion's
raw model (a registry `ModelHandle`, read per batch so a hot swap shows), so both scores come
from the same rows, on the same thread, under the same load: a fair latency comparison, and
the champion score is the offline model's, not the published `failure_prob` (which the Scorer
blends with the online model). A caller that already has raw champion scores passes
`champion_scores=` (and `champion_seconds=`) and no champion call is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from edgeml.topics.records import ComparedRow, ModelComparison

__all__ = ["RowKey", "ScoringModel", "ShadowScorer", "ShadowStats", "pump"]

log = logging.getLogger(__name__)

RowKey = tuple[str, int, float]  # (device id, seq, event ts) of one scored reading


class ScoringModel(Protocol):
    """What shadow scoring needs of a model: a registry `ModelHandle` (wrap a `LoadedModel`:
    `ModelHandle(registry.load(...))`) or an `EngineFailureModel` fit. Load a challenger with
    `expected_inputs=` the champion's inputs: shadow rows are the champion's feature rows."""

    @property
    def ref(self) -> str: ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(slots=True)
class ShadowStats:
    """Counters since start (read them for metrics; batches and rows both, drops by cause)."""

    submitted: int = 0  # batches accepted
    rows: int = 0  # rows accepted
    dropped: int = 0  # batches refused because the queue was full (challenger behind)
    dropped_rows: int = 0
    refused: int = 0  # batches refused as malformed (keys/scores not matching the rows)
    compared: int = 0  # batches scored by the challenger (comparison made)
    challenger_errors: int = 0  # batches whose challenger call raised or answered badly
    champion_errors: int = 0  # batches whose champion re-score raised (no comparison made)
    outbox_dropped: int = 0  # comparisons dropped because nobody drained the outbox


@dataclass(slots=True, frozen=True)
class _Job:
    features: np.ndarray
    keys: tuple[RowKey, ...]
    champion_scores: np.ndarray | None
    champion_seconds: float | None
    champion_ref: str | None


class _ChampionRef:
    """A fixed ref for callers that pass champion scores without a champion model."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def predict(self, features: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{self.ref}: no champion model to re-score with")


class ShadowScorer:
    """Scores submitted batches with a challenger (and the champion) on one daemon thread.

    `max_pending` bounds the batches waiting for that thread, `max_outbox` the comparisons
    waiting to be drained. Usually created once per worker next to the champion's handle and
    fed from a batch observer (`agents/shadow.py`).
    """

    def __init__(
        self,
        challenger: ScoringModel,
        *,
        champion: ScoringModel | str,
        max_pending: int = 16,
        max_outbox: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_pending < 1 or max_outbox < 1:
            raise ValueError("max_pending and max_outbox must be >= 1")
        self.challenger = challenger
        self.champion: ScoringModel = (
            _ChampionRef(champion) if isinstance(champion, str) else champion
        )
        self.stats = ShadowStats()
        self._clock = clock
        self._queue: queue.Queue[_Job | None] = queue.Queue(max_pending)
        self._outbox: deque[ModelComparison] = deque()
        self._max_outbox = max_outbox
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # jobs accepted and not yet finished
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="edgeml-shadow", daemon=True)
        self._thread.start()

    # -- the critical path side -----------------------------------------------------------------

    def submit(
        self,
        features: np.ndarray,
        champion_scores: np.ndarray | None = None,
        *,
        keys: Sequence[RowKey],
        champion_seconds: float | None = None,
        champion_ref: str | None = None,
    ) -> bool:
        """Queue one batch for shadow scoring; False when it was dropped or refused (counted).

        Never blocks and never raises: whatever goes wrong here must not touch the champion's
        prediction, so a malformed call is logged and counted (`stats.refused`)."""
        try:
            x = np.array(features, dtype=np.float32, copy=True)  # the caller may reuse its buffer
            if x.ndim != 2 or len(x) != len(keys):
                raise ValueError(f"features of shape {list(x.shape)} for {len(keys)} keys")
            scores = None
            if champion_scores is not None:
                scores = np.array(champion_scores, dtype=np.float64, copy=True).reshape(-1)
                if len(scores) != len(x):
                    raise ValueError(f"{len(scores)} champion scores for {len(x)} rows")
            elif isinstance(self.champion, _ChampionRef):
                raise ValueError("no champion model: pass champion_scores")
            job = _Job(x, tuple(keys), scores, champion_seconds, champion_ref)
        except Exception as exc:  # never the champion's problem (docstring)
            with self._lock:
                self.stats.refused += 1
            log.warning("shadow batch refused: %s", exc)
            return False
        if not len(x):
            return True
        with self._lock:
            if self._closed:
                return False
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self.stats.dropped += 1
                self.stats.dropped_rows += len(x)
                return False
            self._busy += 1
            self.stats.submitted += 1
            self.stats.rows += len(x)
        return True

    # -- the consumer side ----------------------------------------------------------------------

    def drain(self, limit: int | None = None) -> list[ModelComparison]:
        """Take up to `limit` (None: all) comparisons made so far, oldest first."""
        with self._lock:
            n = len(self._outbox) if limit is None else min(limit, len(self._outbox))
            return [self._outbox.popleft() for _ in range(n)]

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted batch is scored (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not self._idle.wait(left):
                    return self._busy == 0
        return True

    def close(self) -> None:
        """Stop taking batches; the thread ends after the batch it is on (a hung challenger
        keeps its daemon thread, which dies with the process)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(queue.Full):  # a thread behind checks `_closed` after each batch
            self._queue.put_nowait(None)

    # -- the shadow thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                comparison = self._compare(job)
            except Exception:  # a bug here must not kill the thread (then every batch drops)
                log.exception("shadow scoring failed")
                comparison = None
            with self._lock:
                if comparison is not None:
                    if len(self._outbox) < self._max_outbox:
                        self._outbox.append(comparison)
                    else:
                        self.stats.outbox_dropped += 1
                self._busy -= 1
                self._idle.notify_all()
                if self._closed:
                    return

    def _compare(self, job: _Job) -> ModelComparison | None:
        champion_ref = job.champion_ref or self.champion.ref
        scores, champion_s = job.champion_scores, job.champion_seconds
        if scores is None:
            champion_ref = self.champion.ref  # the version this re-score runs on
            start = time.perf_counter()
            try:
                scores = _scores(self.champion.predict(job.features), len(job.features))
            except Exception as exc:
                with self._lock:
                    self.stats.champion_errors += 1
                log.warning("shadow: champion %s failed, batch skipped: %s", champion_ref, exc)
                return None
            champion_s = time.perf_counter() - start
        challenger_ref = self.challenger.ref
        error: str | None = None
        start = time.perf_counter()
        try:
            challenged: np.ndarray | None = _scores(
                self.challenger.predict(job.features), len(job.features)
            )
        except Exception as exc:
            challenged, error = None, f"{type(exc).__name__}: {exc}"
        challenger_s = time.perf_counter() - start
        with self._lock:
            self.stats.compared += 1
            if error is not None:
                self.stats.challenger_errors += 1
        rows = tuple(
            ComparedRow(
                device_id=device,
                seq=int(seq),
                ts=float(ts),
                champion=float(scores[i]),
                challenger=None if challenged is None else float(challenged[i]),
            )
            for i, (device, seq, ts) in enumerate(job.keys)
        )
        return ModelComparison(
            champion=champion_ref,
            challenger=challenger_ref,
            champion_s=champion_s,
            challenger_s=challenger_s,
            scored_at=self._clock(),
            rows=rows,
            challenger_error=error,
        )


def _scores(out: Any, n: int) -> np.ndarray:
    """(n,) finite float64 scores, or ValueError: a short or NaN answer is a failed call."""
    arr = np.asarray(out, dtype=np.float64).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"answered {len(arr)} scores for {n} rows")
    if not np.all(np.isfinite(arr)):
        raise ValueError("answered non-finite scores")
    return arr


Send = Callable[[bytes, bytes], Awaitable[Any]]


async def pump(
    shadow: ShadowScorer,
    send: Send,
    *,
    interval_s: float = 0.5,
    stop: asyncio.Event | None = None,
    batch: int = 256,
) -> int:
    """Send drained comparisons as `(key = challenger ref, value = JSON)` until `stop` is set
    (then once more, so nothing drained is left behind); returns how many were sent.

    A failed `send` is logged and the loop goes on: comparisons are a sample, the worker's
    outputs are not, so a broker hiccup costs comparisons, never the agent."""
    sent = 0
    while True:
        stopping = stop is not None and stop.is_set()
        for record in shadow.drain(None if stopping else batch):
            try:
                await send(record.challenger.encode(), orjson.dumps(record.to_wire()))
                sent += 1
            except Exception as exc:
                log.warning("model comparison not sent: %s", exc)
        if stopping:
            return sent
        if stop is None:
            await asyncio.sleep(interval_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
