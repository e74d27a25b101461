"""What one key holds (`KeyHead`: index + running totals) and what a batch adds (`KeyPartial`),
with their byte forms; the pane table's keys (`pane_key`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from edgeml.models.analytics.stats import FLEET_KEY, WindowStats

if TYPE_CHECKING:  # only the annotation of `KeyHead.pane`: the store module imports this one
    from edgeml.models.analytics.store import PaneStore

__all__ = ["KeyHead", "KeyPartial", "pane_key", "parse_pane_key"]


def pane_key(key: str, pane: int) -> str:
    """The pane table's key for `key`'s pane starting at `pane` (`dev-0001@1767225600`)."""
    return f"{key}@{pane}"


def parse_pane_key(stored: str) -> tuple[str, int]:
    key, _, pane = stored.rpartition("@")
    return key, int(pane)


@dataclass(slots=True)
class KeyHead:
    """What one key (device, site or the fleet) has: its partition, event-time watermark,
    descriptive labels, which panes it has, running totals over them, and the newest pane's
    aggregates (`open_pane` / `open_stats`).

    The newest pane lives in the head so that the usual batch (readings of the current
    minute) costs one table write per key; it moves to the pane table when a newer pane
    starts. `sources` (sites and the fleet only): per source partition of the input, the
    highest input offset whose partial was applied, so a partial delivered twice is ignored.
    """

    partition: int
    watermark: float = -math.inf
    site: str | None = None
    device_type: str | None = None
    panes: list[int] = field(default_factory=list)
    totals: WindowStats = field(default_factory=WindowStats)
    open_pane: int | None = None
    open_stats: WindowStats | None = None
    sources: dict[int, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        wire: dict[str, Any] = {
            "p": self.partition,
            "w": self.watermark if math.isfinite(self.watermark) else None,
            "s": self.site,
            "t": self.device_type,
            "panes": self.panes,
            "tot": self.totals.to_wire(),
            "op": self.open_pane,
            "os": None if self.open_stats is None else self.open_stats.to_wire(),
        }
        if self.sources:  # device heads have none: their bytes stay as they were
            wire["src"] = {str(p): offset for p, offset in self.sources.items()}
        return orjson.dumps(wire)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyHead:
        obj = orjson.loads(data)
        stats = obj.get("os")
        return cls(
            partition=int(obj["p"]),
            watermark=-math.inf if obj["w"] is None else float(obj["w"]),
            site=obj["s"],
            device_type=obj["t"],
            panes=[int(p) for p in obj["panes"]],
            totals=WindowStats.from_wire(obj["tot"]),
            open_pane=obj.get("op"),
            open_stats=None if stats is None else WindowStats.from_wire(stats),
            sources={int(p): int(offset) for p, offset in obj.get("src", {}).items()},
        )

    def pane(self, store: PaneStore, key: str, pane: int) -> WindowStats | None:
        """One pane's aggregates: the open one from the head, the others from the store."""
        if pane == self.open_pane:
            return self.open_stats
        return store.get_pane(key, pane)


@dataclass(slots=True)
class KeyPartial:
    """What one batch adds to one key: pane deltas, the newest event time, labels, and the
    index of a batch message from the key's partition (where its table writes must go).

    A site/fleet partial also names its `source` partition of the input and the highest input
    `offset` of that partition it covers (-1: none, a device partial): `apply_partial` ignores
    a partial whose offset it already applied for that source (a partial re-delivered after a
    crash of the aggregating worker)."""

    origin: int
    panes: dict[int, WindowStats] = field(default_factory=dict)
    watermark: float = -math.inf
    site: str | None = None
    device_type: str | None = None
    source: int = -1
    offset: int = -1

    def pane(self, start: int) -> WindowStats:
        stats = self.panes.get(start)
        if stats is None:
            stats = self.panes[start] = WindowStats()
        return stats

    def merge(self, other: KeyPartial) -> KeyPartial:
        for start, stats in other.panes.items():
            self.pane(start).merge(stats)
        self.watermark = max(self.watermark, other.watermark)
        self.site = other.site or self.site
        self.device_type = other.device_type or self.device_type
        if other.source >= 0:
            if self.source >= 0 and other.source != self.source:
                raise ValueError(f"partials of sources {self.source} and {other.source} merged")
            self.source = other.source
            self.offset = max(self.offset, other.offset)
        return self

    def to_bytes(self, key: str) -> bytes:
        """Wire form on the site-partials topic (`origin` is local to a batch: not sent)."""
        wire: dict[str, Any] = {
            "k": key,
            "w": self.watermark if math.isfinite(self.watermark) else None,
            "panes": [[start, stats.to_wire()] for start, stats in self.panes.items()],
        }
        if self.source >= 0:
            wire["src"] = [self.source, self.offset]
        return orjson.dumps(wire)

    @classmethod
    def from_bytes(cls, data: bytes, origin: int = 0) -> tuple[str, KeyPartial]:
        obj = orjson.loads(data)
        partial = cls(origin=origin)
        partial.watermark = -math.inf if obj["w"] is None else float(obj["w"])
        partial.panes = {int(start): WindowStats.from_wire(w) for start, w in obj["panes"]}
        source = obj.get("src")
        if source is not None:
            partial.source, partial.offset = int(source[0]), int(source[1])
        key = obj["k"]
        if key != FLEET_KEY:
            partial.site = key
        return key, partial
