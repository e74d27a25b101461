"""Storage of heads and panes (`PaneStore`, `DictPaneStore`), and merging a batch's partial
into it with event-time retention (`apply_partial`, `sweep_idle`)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

import orjson

from edgeml.models.analytics.keys import KeyHead, KeyPartial, pane_key
from edgeml.models.analytics.stats import WindowStats
from edgeml.models.analytics.windows import AnalyticsWindows

__all__ = ["DictPaneStore", "PaneStore", "apply_partial", "sweep_idle"]


class PaneStore(Protocol):
    """Storage for heads and panes of one scope (devices, or sites + fleet). The worker's is
    a pair of Faust tables written to one partition; tests use dicts."""

    def get_head(self, key: str) -> KeyHead | None: ...

    def put_head(self, key: str, head: KeyHead) -> None: ...

    def delete_head(self, key: str) -> None: ...

    def get_pane(self, key: str, pane: int) -> WindowStats | None: ...

    def put_pane(self, key: str, pane: int, stats: WindowStats) -> None: ...

    def delete_pane(self, key: str, pane: int) -> None: ...


class DictPaneStore:
    """A `PaneStore` in two dicts of bytes (tests, the edge agent): values are serialized on
    every write, as in the worker's tables, so no object is shared between writes."""

    def __init__(self) -> None:
        self.heads: dict[str, bytes] = {}
        self.panes: dict[str, bytes] = {}

    def get_head(self, key: str) -> KeyHead | None:
        raw = self.heads.get(key)
        return None if raw is None else KeyHead.from_bytes(raw)

    def put_head(self, key: str, head: KeyHead) -> None:
        self.heads[key] = head.to_bytes()

    def delete_head(self, key: str) -> None:
        self.heads.pop(key, None)

    def get_pane(self, key: str, pane: int) -> WindowStats | None:
        raw = self.panes.get(pane_key(key, pane))
        return None if raw is None else WindowStats.from_wire(orjson.loads(raw))

    def put_pane(self, key: str, pane: int, stats: WindowStats) -> None:
        self.panes[pane_key(key, pane)] = orjson.dumps(stats.to_wire())

    def delete_pane(self, key: str, pane: int) -> None:
        self.panes.pop(pane_key(key, pane), None)

    def iter_heads(self) -> Iterator[tuple[str, KeyHead]]:
        for key, raw in list(self.heads.items()):
            yield key, KeyHead.from_bytes(raw)


def apply_partial(
    store: PaneStore,
    key: str,
    partial: KeyPartial,
    windows: AnalyticsWindows,
    partition: int,
    *,
    create: bool = True,
) -> KeyHead | None:
    """Merge one batch's partial into the stored panes of `key`, then drop expired panes.

    Deltas for the open (newest) pane merge into the head; a newer pane closes it (it is
    written to the pane table) and becomes the open one; older panes (late data) are merged
    in the pane table. Panes already behind the key's retention horizon are not resurrected.
    With `create=False` an unknown key is left alone (dead letters with an unknown key). A
    partial with a `source` at or below the offset the key already applied for that source is
    ignored (it was delivered before). The partial's objects may be kept: do not reuse it
    afterwards. Returns the new head (None when nothing was stored).
    """
    head = store.get_head(key)
    if head is None:
        if not create:
            return None
        head = KeyHead(partition=partition)
    elif partial.source >= 0 and head.sources.get(partial.source, -1) >= partial.offset:
        return None
    if partial.source >= 0:
        head.sources[partial.source] = partial.offset
    head.partition = partition
    head.watermark = max(head.watermark, partial.watermark)
    head.site = partial.site or head.site
    head.device_type = partial.device_type or head.device_type
    panes = head.panes
    for start in sorted(partial.panes):
        delta = partial.panes[start]
        if windows.expired(start, head.watermark):
            continue
        head.totals.add_counts(delta)
        if not panes or start > panes[-1]:
            panes.append(start)
        elif start not in panes:
            insort(panes, start)
        if start == head.open_pane and head.open_stats is not None:
            head.open_stats.merge(delta)
        elif head.open_pane is None or start > head.open_pane:
            if head.open_pane is not None and head.open_stats is not None:
                store.put_pane(key, head.open_pane, head.open_stats)
            head.open_pane, head.open_stats = start, delta  # the partial is not used again
        else:
            current = store.get_pane(key, start) or WindowStats()
            store.put_pane(key, start, current.merge(delta))
    _expire_panes(store, key, head, windows)
    store.put_head(key, head)
    return head


def _expire_panes(store: PaneStore, key: str, head: KeyHead, windows: AnalyticsWindows) -> None:
    keep = 0
    while keep < len(head.panes) and windows.expired(head.panes[keep], head.watermark):
        pane = head.panes[keep]
        old = head.pane(store, key, pane)
        if old is not None:
            head.totals.subtract_counts(old)
        if pane == head.open_pane:
            head.open_pane = head.open_stats = None
        else:
            store.delete_pane(key, pane)
        keep += 1
    if keep:
        del head.panes[:keep]


def sweep_idle(
    store: PaneStore,
    heads: Iterable[tuple[str, KeyHead]],
    partition_watermarks: Mapping[int, float],
    windows: AnalyticsWindows,
) -> list[str]:
    """Delete keys that went quiet: every pane of a key whose watermark is `retention_s`
    behind its partition's watermark (the newest event time seen there). Returns their keys.

    Only heads in `partition_watermarks`' partitions are considered (the caller can write
    there); `heads` is usually the local table's items.
    """
    gone: list[str] = []
    for key, head in heads:
        mark = partition_watermarks.get(head.partition)
        if mark is None or head.watermark > mark - windows.retention_s:
            continue
        for pane in head.panes:
            if pane != head.open_pane:
                store.delete_pane(key, pane)
        store.delete_head(key)
        gone.append(key)
    return gone
