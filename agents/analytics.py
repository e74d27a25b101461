"""Windowed analytics tables: filled after each scored batch, read by the web views.

Devices: `AnalyticsObserver` is a `BatchObserver` of `score_readings`. It folds the batch into
per-device pane deltas (`models.analytics`) and merges them into the device tables *inside the
scoring stream*, with the device's own message as the current event: Faust writes a table key
to the partition of the current event, and the device's readings live in that partition, so
its aggregates are co-partitioned with its readings and its scoring state. They move with the
partition on a rebalance and are recovered from the changelog on a restart.

Sites and the fleet are not keyed like the input: a site's devices are spread over every
partition, hence over every worker. Two ways were weighed:

- per-worker partial aggregates merged at query time: cheap to write, but every read of a
  site fans out to all workers, and a read during a rebalance (a partition in recovery, a
  worker gone) is either refused or partial;
- **repartitioning** (chosen): each batch sends one partial per site it touched (and one for
  the fleet, key `*`) to the internal `analytics-site-partials` topic, keyed by site;
  `aggregate_sites` folds them into site tables co-partitioned with that topic. Each site has
  exactly one owner, so `/analytics/fleet` and `/analytics/sites/{site}` are answered by one
  worker through Faust's table router, with the same guarantees as the device tables. The
  cost is one small message per site per batch (not per reading) and a little delay.

Both paths are at-least-once like the rest of the pipeline: a batch re-delivered after a crash
(processed, not yet committed) is counted again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import faust
import orjson

from agents.state import cached_decode, in_partition_of
from models.analytics import (
    AnalyticsWindows,
    KeyHead,
    KeyPartial,
    WindowStats,
    apply_partial,
    fold_batch,
    fold_dead_letters,
    pane_key,
    reading_origins,
    roll_up,
    sweep_idle,
)
from models.pipeline import BatchResult
from topics.analytics import AnalyticsTables

__all__ = ["AnalyticsObserver", "TablePaneStore", "local_heads", "register"]

log = logging.getLogger(__name__)


class TablePaneStore:
    """`models.analytics.PaneStore` over a heads table and a panes table.

    Reads and writes go to the partition of `event`, made the stream's current event first
    (as in `agents.state.TableStateStore`: the RocksDB store reads from, and Faust writes to,
    the current event's partition). A store without an event is read-only (web views): there
    is no current event there, and the RocksDB store looks the key up in every partition.
    """

    def __init__(
        self,
        heads: faust.types.TableT,
        panes: faust.types.TableT,
        stream: faust.Stream | None = None,
        event: faust.EventT | None = None,
        cache: dict[str, tuple[bytes, KeyHead]] | None = None,
    ) -> None:
        self._heads = heads
        self._panes = panes
        self._stream = stream
        self._event = event
        self._cache = cache

    def _here(self) -> None:
        if self._stream is not None and self._event is not None:
            in_partition_of(self._stream, self._event)

    def get_head(self, key: str) -> KeyHead | None:
        self._here()  # RocksDB reads, too, look in the current event's partition
        raw = self._heads.get(key.encode())
        if not raw:
            return None
        if self._cache is None:
            return KeyHead.from_bytes(raw)
        return cached_decode(self._cache, key, raw, KeyHead.from_bytes)

    def put_head(self, key: str, head: KeyHead) -> None:
        self._here()
        raw = head.to_bytes()
        self._heads[key.encode()] = raw
        if self._cache is not None:
            self._cache[key] = (raw, head)

    def delete_head(self, key: str) -> None:
        self._here()
        self._heads.pop(key.encode(), None)
        if self._cache is not None:
            self._cache.pop(key, None)

    def get_pane(self, key: str, pane: int) -> WindowStats | None:
        self._here()
        raw = self._panes.get(pane_key(key, pane).encode())
        return WindowStats.from_wire(orjson.loads(raw)) if raw else None

    def put_pane(self, key: str, pane: int, stats: WindowStats) -> None:
        self._here()
        self._panes[pane_key(key, pane).encode()] = orjson.dumps(stats.to_wire())

    def delete_pane(self, key: str, pane: int) -> None:
        self._here()
        self._panes.pop(pane_key(key, pane).encode(), None)


def local_heads(heads: faust.types.TableT, partitions: set[int]) -> Iterator[tuple[str, KeyHead]]:
    """Heads of the local store whose partition is in `partitions` (the memory store also
    holds standby partitions; a head records its own partition)."""
    for raw_key, raw in list(heads.items()):
        if not raw:
            continue
        head = KeyHead.from_bytes(raw)
        if head.partition in partitions:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            yield key, head


class AnalyticsObserver:
    """`BatchObserver` that folds each scored batch into the device tables and sends the
    batch's site/fleet partials to the repartition topic. One per worker, made by
    `create_app`. Keeps each partition's event-time watermark in memory for dead letters
    (which carry no trusted time) and for sweeping devices that went quiet.
    """

    def __init__(
        self,
        tables: AnalyticsTables,
        windows: AnalyticsWindows,
        *,
        sweep_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tables = tables
        self.windows = windows
        self.sweep_every_s = sweep_every_s
        self.watermarks: dict[int, float] = {}  # partition -> newest event time seen there
        # Decoded device heads with the bytes last written for them (as `agents.state`'s
        # StateCache): a hit skips decoding; the table stays the source of truth.
        self.heads: dict[str, tuple[bytes, KeyHead]] = {}
        self._clock = clock
        self._last_sweep = clock()

    def __call__(
        self, result: BatchResult, events: Sequence[faust.EventT], stream: faust.Stream
    ) -> None:
        try:
            self._observe(result, events, stream)
        except Exception:
            self.heads.clear()  # a head may have been changed in place and not written
            raise

    def _observe(
        self, result: BatchResult, events: Sequence[faust.EventT], stream: faust.Stream
    ) -> None:
        if not events:
            return
        tables, windows = self.tables, self.windows
        origins = reading_origins(result, [event.message.key for event in events])
        devices = fold_batch(result.scored, origins, windows)
        first_of: dict[int, int] = {}
        for index, event in enumerate(events):
            first_of.setdefault(event.message.partition, index)
        for partial in devices.values():
            partition = events[partial.origin].message.partition
            if partial.watermark > self.watermarks.get(partition, -math.inf):
                self.watermarks[partition] = partial.watermark
        dead: dict[str, KeyPartial] = {}
        if result.dead_letters:
            fallback = max(self.watermarks.values(), default=time.time())
            event_ts = {p: self.watermarks.get(p, fallback) for p in first_of}
            dead = fold_dead_letters(result.outbound, first_of, event_ts, windows)
        rolled = roll_up(devices, dead)  # before the device partials are stored
        for device, partial in devices.items():
            self._apply(device, partial, events, stream)
        for device, partial in dead.items():
            self._apply(device, partial, events, stream, create=False)
        for key, partial in rolled.items():
            tables.site_partials_topic.send_soon(key=key.encode(), value=partial.to_bytes(key))
        if self._clock() - self._last_sweep >= self.sweep_every_s:
            self._last_sweep = self._clock()
            self.sweep(events, stream, first_of)

    def _apply(
        self,
        key: str,
        partial: KeyPartial,
        events: Sequence[faust.EventT],
        stream: faust.Stream,
        *,
        create: bool = True,
    ) -> None:
        event = events[partial.origin]
        tables = self.tables
        store = TablePaneStore(tables.device_heads, tables.device_panes, stream, event, self.heads)
        apply_partial(store, key, partial, self.windows, event.message.partition, create=create)

    def sweep(
        self, events: Sequence[faust.EventT], stream: faust.Stream, first_of: dict[int, int]
    ) -> list[str]:
        """Delete devices of this batch's partitions that went quiet (see `sweep_idle`)."""
        marks = {p: self.watermarks[p] for p in first_of if p in self.watermarks}
        by_partition: dict[int, list[tuple[str, KeyHead]]] = {}
        for key, head in local_heads(self.tables.device_heads, set(marks)):
            by_partition.setdefault(head.partition, []).append((key, head))
        tables = self.tables
        gone: list[str] = []
        for partition, heads in by_partition.items():
            event = events[first_of[partition]]
            store = TablePaneStore(
                tables.device_heads, tables.device_panes, stream, event, self.heads
            )
            gone += sweep_idle(store, heads, marks, self.windows)
        if gone:
            log.info("analytics: %d quiet device(s) expired", len(gone))
        return gone


def register(
    app: faust.App, tables: AnalyticsTables, windows: AnalyticsWindows
) -> faust.types.AgentT:
    """The `aggregate_sites` agent: site/fleet partials in, site tables updated."""

    @app.agent(tables.site_partials_topic, name="aggregate_sites")
    async def aggregate_sites(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)
        async for event in concrete.events():
            key, partial = KeyPartial.from_bytes(cast(Any, event.value))
            store = TablePaneStore(tables.site_heads, tables.site_panes)  # current event set
            apply_partial(store, key, partial, windows, event.message.partition)

    return aggregate_sites
