"""Reading back: a key's listing line (`head_summary`) and its windows (`key_view`), JSON-ready."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from edgeml.models.analytics.keys import KeyHead
from edgeml.models.analytics.stats import WindowStats
from edgeml.models.analytics.store import PaneStore
from edgeml.models.analytics.windows import AnalyticsWindows

__all__ = ["head_summary", "key_view"]


def _load_panes(store: PaneStore, key: str, head: KeyHead) -> Iterator[tuple[int, WindowStats]]:
    for pane in head.panes:
        stats = head.pane(store, key, pane)
        if stats is not None:
            yield pane, stats


def head_summary(
    store: PaneStore, key: str, head: KeyHead, windows: AnalyticsWindows
) -> dict[str, Any]:
    """One line of a listing: labels, watermark, totals over the retained panes, and the
    newest tumbling window."""
    latest: dict[str, Any] | None = None
    if head.panes:
        start = head.panes[-1] // windows.tumbling_s * windows.tumbling_s
        stats = WindowStats()
        for pane in range(start, start + windows.tumbling_s, windows.pane_s):
            if pane in head.panes:
                got = head.pane(store, key, pane)
                if got is not None:
                    stats.merge(got)
        latest = {"start": start, "end": start + windows.tumbling_s, **stats.summary()}
    totals = head.totals.summary()
    for name in ("score", "metrics"):
        del totals[name]
    return {
        "key": key,
        "site": head.site,
        "device_type": head.device_type,
        "watermark": head.watermark if math.isfinite(head.watermark) else None,
        "totals": totals,
        "latest": latest,
    }


def key_view(
    store: PaneStore,
    key: str,
    kind: str,
    windows: AnalyticsWindows,
    *,
    last: int | None = None,
) -> dict[str, Any] | None:
    """A key's `kind` windows (oldest first; `last` keeps the newest N) and its totals, or
    None for an unknown key. A bad `kind` is a ValueError listing the choices."""
    size, hop = windows.size_and_hop(kind)
    head = store.get_head(key)
    if head is None:
        return None
    listed = windows.windows(kind, dict(_load_panes(store, key, head)), head.watermark)
    if last is not None:
        listed = listed[-last:] if last > 0 else []
    summary = head_summary(store, key, head, windows)
    del summary["latest"]
    return {
        **summary,
        "window": {"kind": kind, "size_s": size, "hop_s": hop, "retention_s": windows.retention_s},
        "windows": [
            {"start": start, "end": end, "open": end > head.watermark, **stats.summary()}
            for start, end, stats in listed
        ],
    }
