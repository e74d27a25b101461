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
- **repartitioning** (chosen): partials per site (and for the fleet, key `*`) go to the
  internal `analytics-site-partials` topic, keyed by site; `aggregate_sites` folds them into
  site tables co-partitioned with that topic. Each site has exactly one owner, so
  `/analytics/fleet` and `/analytics/sites/{site}` are answered by one worker through Faust's
  table router, with the same guarantees as the device tables. The cost is one small message
  per site and source partition per offset commit (not per reading, nor per batch) and a
  little delay.

Exact after a crash or a rebalance (issue #9; see `agents.writeback` for the argument):

- a batch's device writes and site partials are held with its state until its outputs are
  acked, and the partials are sent by the commit flush (`SitePartials`), never before the
  state that records their readings;
- readings the pipeline recognises as re-delivered (by device `seq`) are not in
  `result.scored`, so they are not counted again;
- each partial carries its source partition and highest input offset, and a site head keeps
  the highest offset applied per source: a partial re-delivered to `aggregate_sites` (its
  worker died between the site-table flush and the offset commit) is ignored;
- a commit flush writes the state locally at once (RocksDB) while its site partials wait in
  the producer buffer, so a kill during the flush's sends left state that records readings
  whose partials never left: the restart skipped them as applied (the fleet short by a
  commit interval of readings, docs/faults.md). So the same synchronous flush also writes the
  partials into the `analytics-partials-outbox` table (one key per input partition: its last
  flush's partials), co-partitioned with the state, and every recovery resends what the
  outbox holds (`resend_after_recovery`): a partial that did arrive is ignored by its offset,
  one that did not is applied. What is left is a kill in the middle of the flush's own
  synchronous local writes (between the state and the outbox: microseconds to a few ms),
  and a restart from the changelogs after a kill that delivered the outbox's changelog
  message but not all of its states' (different topics): counted twice (docs/faults.md).

Dead letters are still at-least-once: a malformed message re-delivered in a batch with new
readings of its partition is counted again (it carries no seq to recognise it by).
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

from edgeml.agents.writeback import WriteBackTable, WriteStage, in_partition_of
from edgeml.models.analytics import (
    AnalyticsWindows,
    KeyHead,
    KeyPartial,
    WindowStats,
    apply_partial,
    fold_batch,
    fold_dead_letters,
    pane_key,
    roll_up_by_source,
    sweep_idle,
)
from edgeml.models.pipeline import BatchResult
from edgeml.topics.analytics import AnalyticsTables

__all__ = [
    "AnalyticsObserver",
    "AnalyticsStores",
    "PaneTables",
    "SitePartials",
    "TablePaneStore",
    "local_heads",
    "register",
    "resend_after_recovery",
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


class SitePartials:
    """The site/fleet partials of scored batches, sent to `analytics-site-partials` by the
    commit flush: a `StagedBuffer` of the app's `WriteStage`, so a batch's partials go out
    with its state and only once its outputs are acked. Partials of one (key, source
    partition) merge until then: one message each per commit. Each flush first records what
    it sends per source partition in `outbox` (module docstring), written in that partition
    with one of its events (`anchors`)."""

    def __init__(self, topic: faust.TopicT, outbox: faust.types.TableT) -> None:
        self.topic = topic
        self.outbox = outbox
        self._staged: dict[tuple[str, int], KeyPartial] = {}
        self._held: dict[tuple[str, int], KeyPartial] = {}
        self._released: dict[tuple[str, int], KeyPartial] = {}
        self._anchors: dict[int, faust.EventT] = {}  # source partition -> an event of it
        self.resent = 0  # partials resent from the outbox after recoveries
        WriteStage.of(topic.app).join(self)

    def __len__(self) -> int:
        return len(self._staged.keys() | self._held.keys() | self._released.keys())

    def add(
        self, partials: dict[tuple[str, int], KeyPartial], anchors: dict[int, faust.EventT]
    ) -> None:
        """Stage a batch's partials; `anchors` holds an event of each source partition."""
        _merge_into(self._staged, partials)
        self._anchors.update(anchors)

    def close_window(self) -> None:
        _merge_into(self._released, self._staged)
        self._staged = {}

    def hold(self) -> None:
        _merge_into(self._held, self._staged)
        self._staged = {}

    def release(self) -> None:
        _merge_into(self._released, self._held)
        self._held = {}

    def flush(self) -> int:
        """Send the released partials (and staged ones outside a held batch); how many."""
        out, self._released = self._released, {}
        _merge_into(out, self._staged)
        self._staged = {}
        if not out:
            return 0
        wires: dict[int, list[tuple[str, bytes]]] = {}
        for (key, source), partial in out.items():
            wires.setdefault(source, []).append((key, partial.to_bytes(key)))
        anchors = self._anchors
        needed = {source for _, source in self._held}
        self._anchors = {p: e for p, e in anchors.items() if p in needed}
        # Outbox first, sends second, all before the event loop runs again: no kill can fall
        # between a partial's send and its outbox record.
        for source, pairs in wires.items():
            in_partition_of(anchors[source])
            self.outbox[_outbox_key(source)] = b"\n".join(raw for _, raw in pairs)
        for pairs in wires.values():
            for key, raw in pairs:
                self.topic.send_soon(key=key.encode(), value=raw)
        WriteStage.of(self.topic.app).written += len(out)
        return len(out)

    def resend(self) -> int:
        """Send again every partial the local outbox holds (its partitions' last flushes);
        `aggregate_sites` ignores those it applied. Returns how many."""
        sent = 0
        for _, raw in list(self.outbox.items()):
            for line in raw.split(b"\n") if raw else ():
                key = orjson.loads(line)["k"]
                self.topic.send_soon(key=str(key).encode(), value=line)
                sent += 1
        self.resent += sent
        if sent:
            log.info("analytics: resent %d site partial(s) from the outbox", sent)
        return sent


def _outbox_key(source: int) -> bytes:
    return str(source).encode()


def resend_after_recovery(app: faust.App, partials: SitePartials) -> None:
    """Resend the outbox once the tables are recovered after each rebalance (Faust sends
    `on_rebalance_complete` then, before the streams resume: the resent partials are in the
    producer buffer ahead of any new flush's)."""

    async def resend(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        partials.resend()

    app.on_rebalance_complete.connect(resend)


def _merge_into(
    target: dict[tuple[str, int], KeyPartial], partials: dict[tuple[str, int], KeyPartial]
) -> None:
    for key, partial in partials.items():
        mine = target.get(key)
        if mine is None:
            target[key] = partial
        else:
            mine.merge(partial)


@dataclass(frozen=True)
class AnalyticsStores:
    """One app's write-back views of its analytics tables and its site partials: written by
    the observer and `aggregate_sites`, read by the web views (which so see writes not yet
    flushed)."""

    devices: PaneTables
    sites: PaneTables
    partials: SitePartials

    @classmethod
    def over(cls, tables: AnalyticsTables) -> AnalyticsStores:
        return cls(
            PaneTables.over(tables.device_heads, tables.device_panes),
            PaneTables.over(tables.site_heads, tables.site_panes),
            SitePartials(tables.site_partials_topic, tables.partials_outbox),
        )

    def all(self) -> list[WriteBackTable[Any] | SitePartials]:
        return [
            self.devices.heads,
            self.devices.panes,
            self.sites.heads,
            self.sites.panes,
            self.partials,
        ]

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
    """`BatchObserver` that folds each scored batch into the device tables and hands the
    batch's site/fleet partials to `SitePartials` (sent by the commit). One per worker, made by
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
        self.partials = stores.partials
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
        windows = self.windows
        devices = fold_batch(result.scored, result.origins, windows)
        first_of: dict[int, int] = {}
        partitions: list[int] = []
        offsets: dict[int, int] = {}  # partition -> highest input offset of it in the batch
        for index, event in enumerate(events):
            message = event.message
            first_of.setdefault(message.partition, index)
            partitions.append(message.partition)
            if message.offset > offsets.get(message.partition, -1):
                offsets[message.partition] = message.offset
        for partial in devices.values():
            partition = events[partial.origin].message.partition
            if partial.watermark > self.watermarks.get(partition, -math.inf):
                self.watermarks[partition] = partial.watermark
        dead: dict[str, KeyPartial] = {}
        if result.dead_letters:
            fallback = max(self.watermarks.values(), default=time.time())
            event_ts = {p: self.watermarks.get(p, fallback) for p in first_of}
            keys = [event.message.key for event in events]
            dead = fold_dead_letters(result.rejections, keys, partitions, event_ts, windows)
        # before the device partials are stored (apply_partial may keep their objects)
        anchors = {p: events[index] for p, index in first_of.items()}
        self.partials.add(roll_up_by_source(devices, dead, partitions, offsets), anchors)
        for device, partial in devices.items():
            self._apply(device, partial, events)
        for device, partial in dead.items():
            self._apply(device, partial, events, create=False)
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
