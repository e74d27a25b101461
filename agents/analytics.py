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
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson

from agents.writeback import WriteBackTable
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

__all__ = [
    "AnalyticsObserver",
    "AnalyticsStores",
    "PaneTables",
    "TablePaneStore",
    "local_heads",
    "register",
]

log = logging.getLogger(__name__)


def _encode_pane(stats: WindowStats) -> bytes:
    return orjson.dumps(stats.to_wire())


def _decode_pane(raw: bytes) -> WindowStats:
    return WindowStats.from_wire(orjson.loads(raw))


@dataclass(frozen=True)
class PaneTables:
    """The heads and panes tables of one scope (devices, or sites + fleet), write-back."""

    heads: WriteBackTable[KeyHead]
    panes: WriteBackTable[WindowStats]

    @classmethod
    def over(cls, heads: faust.types.TableT, panes: faust.types.TableT) -> PaneTables:
        return cls(
            WriteBackTable(heads, KeyHead.to_bytes, KeyHead.from_bytes),
            # Panes are many (retention / pane length per key) and, once closed, rarely read:
            # keeping them decoded would hold every pane twice.
            WriteBackTable(panes, _encode_pane, _decode_pane, keep_decoded=False),
        )

    def store(self, event: faust.EventT | None = None) -> TablePaneStore:
        return TablePaneStore(self, event)

    def forget_decoded(self) -> None:
        self.heads.forget_decoded()
        self.panes.forget_decoded()


@dataclass(frozen=True)
class AnalyticsStores:
    """One app's write-back views of its analytics tables: written by the observer and
    `aggregate_sites`, read by the web views (which so see writes not yet flushed)."""

    devices: PaneTables
    sites: PaneTables

    @classmethod
    def over(cls, tables: AnalyticsTables) -> AnalyticsStores:
        return cls(
            PaneTables.over(tables.device_heads, tables.device_panes),
            PaneTables.over(tables.site_heads, tables.site_panes),
        )

    def all(self) -> list[WriteBackTable[Any]]:
        return [self.devices.heads, self.devices.panes, self.sites.heads, self.sites.panes]

    def flush(self) -> int:
        """Write everything held back (what Faust's next offset commit does); return how many."""
        return sum(table.flush() for table in self.all())


class TablePaneStore:
    """`models.analytics.PaneStore` over a `PaneTables` pair, in the partition of `event`.

    A store without an event is read-only (web views): there is no current event there, and
    the RocksDB store looks a key up in every partition.
    """

    def __init__(self, tables: PaneTables, event: faust.EventT | None = None) -> None:
        self._heads = tables.heads
        self._panes = tables.panes
        self._event = event

    def _writable(self) -> faust.EventT:
        if self._event is None:
            raise RuntimeError("a TablePaneStore without an event is read-only")
        return self._event

    def get_head(self, key: str) -> KeyHead | None:
        return self._heads.get(key.encode(), self._event)

    def put_head(self, key: str, head: KeyHead) -> None:
        self._heads.put(key.encode(), head, self._writable())

    def delete_head(self, key: str) -> None:
        self._heads.delete(key.encode(), self._writable())

    def get_pane(self, key: str, pane: int) -> WindowStats | None:
        return self._panes.get(pane_key(key, pane).encode(), self._event)

    def put_pane(self, key: str, pane: int, stats: WindowStats) -> None:
        self._panes.put(pane_key(key, pane).encode(), stats, self._writable())

    def delete_pane(self, key: str, pane: int) -> None:
        self._panes.delete(pane_key(key, pane).encode(), self._writable())


def local_heads(
    heads: WriteBackTable[KeyHead], partitions: set[int]
) -> Iterator[tuple[str, KeyHead]]:
    """Heads of the local store and pending writes whose partition is in `partitions` (the
    memory store also holds standby partitions; a head records its own partition)."""
    for raw_key, head in heads.items():
        if head.partition in partitions:
            yield raw_key.decode(), head


class AnalyticsObserver:
    """`BatchObserver` that folds each scored batch into the device tables and sends the
    batch's site/fleet partials to the repartition topic. One per worker, made by
    `create_app`. Keeps each partition's event-time watermark in memory for dead letters
    (which carry no trusted time) and for sweeping devices that went quiet.
    """

    def __init__(
        self,
        tables: AnalyticsTables,
        stores: AnalyticsStores,
        windows: AnalyticsWindows,
        *,
        sweep_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tables = tables
        self.devices = stores.devices
        self.windows = windows
        self.sweep_every_s = sweep_every_s
        self.watermarks: dict[int, float] = {}  # partition -> newest event time seen there
        self._clock = clock
        self._last_sweep = clock()

    def __call__(self, result: BatchResult, events: Sequence[faust.EventT]) -> None:
        try:
            self._observe(result, events)
        except Exception:
            self.devices.forget_decoded()  # one may have been changed in place and not put
            raise

    def _observe(self, result: BatchResult, events: Sequence[faust.EventT]) -> None:
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
            self._apply(device, partial, events)
        for device, partial in dead.items():
            self._apply(device, partial, events, create=False)
        for key, partial in rolled.items():
            tables.site_partials_topic.send_soon(key=key.encode(), value=partial.to_bytes(key))
        if self._clock() - self._last_sweep >= self.sweep_every_s:
            self._last_sweep = self._clock()
            self.sweep(events, first_of)

    def _apply(
        self,
        key: str,
        partial: KeyPartial,
        events: Sequence[faust.EventT],
        *,
        create: bool = True,
    ) -> None:
        event = events[partial.origin]
        store = self.devices.store(event)
        apply_partial(store, key, partial, self.windows, event.message.partition, create=create)

    def sweep(self, events: Sequence[faust.EventT], first_of: dict[int, int]) -> list[str]:
        """Delete devices of this batch's partitions that went quiet (see `sweep_idle`)."""
        marks = {p: self.watermarks[p] for p in first_of if p in self.watermarks}
        by_partition: dict[int, list[tuple[str, KeyHead]]] = {}
        for key, head in local_heads(self.devices.heads, set(marks)):
            by_partition.setdefault(head.partition, []).append((key, head))
        gone: list[str] = []
        for partition, heads in by_partition.items():
            store = self.devices.store(events[first_of[partition]])
            gone += sweep_idle(store, heads, marks, self.windows)
        if gone:
            log.info("analytics: %d quiet device(s) expired", len(gone))
        return gone


def register(
    app: faust.App, tables: AnalyticsTables, sites: PaneTables, windows: AnalyticsWindows
) -> faust.types.AgentT:
    """The `aggregate_sites` agent: site/fleet partials in, site tables updated."""

    @app.agent(tables.site_partials_topic, name="aggregate_sites")
    async def aggregate_sites(stream: faust.StreamT[bytes]) -> None:
        concrete = cast(faust.Stream, stream)
        async for event in concrete.events():
            key, partial = KeyPartial.from_bytes(cast(Any, event.value))
            apply_partial(sites.store(event), key, partial, windows, event.message.partition)

    return aggregate_sites
