"""Event-time window analytics: what each device, site and the fleet did, window by window.

Faust-free (the edge agent and the tests use it as plain Python). The worker folds every scored
batch into **panes**: aggregates of one key over `pane_s` seconds of *event time*, where
`pane_s` is the greatest common divisor of the window sizes and hop. Tumbling windows (1 min by
default) and hopping windows (5 min every 1 min) are then exact unions of panes, merged when
they are read — each reading is written once, not once per overlapping window.

    windows = AnalyticsWindows(tumbling_s=60, hopping_s=300, hop_s=60, retention_s=3600)
    partials = fold_batch(result.scored, result.origins, windows)  # key -> KeyPartial
    for key, partial in partials.items():
        apply_partial(store, key, partial, windows, partition)  # store: a PaneStore
    view = key_view(store, "dev-0001", "hopping", windows)      # JSON-ready dict

Everything a pane holds is a monoid (counts, sums, min, max), so panes from several batches,
partial aggregates from several workers and panes of one window merge in any order. Means are
`sum / count` (the sum's order of addition may differ from a one-pass sum in the last bits).

Retention is in event time, per key: a pane is deleted once it ends `retention_s` before the
newest reading of its key (`watermark`), so a key holds at most `retention_s / pane_s + 1`
panes; a key whose watermark falls `retention_s` behind its partition's is deleted whole
(`sweep_idle`). Nothing reads the wall clock.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:  # only types: `Settings` validates windows with this module, keep it light
    from models.pipeline import Rejected
    from models.scoring import ScoredReading

__all__ = [
    "FLEET_KEY",
    "SEVERITIES",
    "UNASSIGNED_SITE",
    "WINDOW_KINDS",
    "AnalyticsWindows",
    "DictPaneStore",
    "KeyHead",
    "KeyPartial",
    "PaneStore",
    "WindowStats",
    "apply_partial",
    "fold_batch",
    "fold_dead_letters",
    "head_summary",
    "key_view",
    "pane_key",
    "parse_pane_key",
    "roll_up",
    "roll_up_by_source",
    "sweep_idle",
]

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
WINDOW_KINDS: tuple[str, ...] = ("tumbling", "hopping")
FLEET_KEY = "*"  # the whole fleet, stored beside the sites
UNASSIGNED_SITE = "unassigned"  # readings without a `site`

_SEVERITY_INDEX = {name: i for i, name in enumerate(SEVERITIES)}


# --------------------------------------------------------------------------------------------
# One window's aggregates
# --------------------------------------------------------------------------------------------


class WindowStats:
    """Aggregates of one key over one stretch of event time (a pane, a window, a total).

    Readings, anomalies, late readings, dead letters, alerts opened by severity, the anomaly
    score's sum and max, and per metric `[n, sum, min, max]`. `merge` is associative and
    commutative; `to_wire`/`from_wire` round-trip exactly (JSON floats are shortest-repr).
    """

    __slots__ = (
        "alerts",
        "anomalies",
        "count",
        "dead_letters",
        "late",
        "metrics",
        "score_max",
        "score_sum",
    )

    def __init__(self) -> None:
        self.count = 0
        self.anomalies = 0
        self.late = 0
        self.dead_letters = 0
        self.alerts = [0, 0, 0]
        self.score_sum = 0.0
        self.score_max = 0.0
        self.metrics: dict[str, list[float]] = {}

    def add_reading(
        self, metrics: Mapping[str, float], score: float, anomaly: bool, late: bool
    ) -> None:
        self.count += 1
        self.anomalies += anomaly
        self.late += late
        self.score_sum += score
        if score > self.score_max:
            self.score_max = score
        own = self.metrics
        for name, value in metrics.items():
            m = own.get(name)
            if m is None:
                own[name] = [1.0, value, value, value]
                continue
            m[0] += 1.0
            m[1] += value
            if value < m[2]:
                m[2] = value
            elif value > m[3]:
                m[3] = value

    def add_alert(self, severity: str) -> None:
        index = _SEVERITY_INDEX.get(severity)
        if index is None:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        self.alerts[index] += 1

    def merge(self, other: WindowStats) -> WindowStats:
        """Fold `other` into this one (in place) and return self."""
        self.count += other.count
        self.anomalies += other.anomalies
        self.late += other.late
        self.dead_letters += other.dead_letters
        a, b = self.alerts, other.alerts
        a[0] += b[0]
        a[1] += b[1]
        a[2] += b[2]
        self.score_sum += other.score_sum
        if other.score_max > self.score_max:
            self.score_max = other.score_max
        own = self.metrics
        for name, theirs in other.metrics.items():
            m = own.get(name)
            if m is None:
                own[name] = theirs[:]
                continue
            m[0] += theirs[0]
            m[1] += theirs[1]
            if theirs[2] < m[2]:
                m[2] = theirs[2]
            if theirs[3] > m[3]:
                m[3] = theirs[3]
        return self

    def counts(self) -> WindowStats:
        """A copy without the per-metric and score parts (what a key's running total keeps)."""
        out = WindowStats()
        out.count, out.anomalies, out.late = self.count, self.anomalies, self.late
        out.dead_letters, out.alerts = self.dead_letters, list(self.alerts)
        return out

    def add_counts(self, other: WindowStats) -> WindowStats:
        """Add `other`'s counts only (a pane joining a running total); in place, returns self."""
        self.count += other.count
        self.anomalies += other.anomalies
        self.late += other.late
        self.dead_letters += other.dead_letters
        alerts = self.alerts
        for i, n in enumerate(other.alerts):
            alerts[i] += n
        return self

    def subtract_counts(self, other: WindowStats) -> WindowStats:
        """Take `other`'s counts out (a pane leaving a running total); in place, returns self."""
        self.count -= other.count
        self.anomalies -= other.anomalies
        self.late -= other.late
        self.dead_letters -= other.dead_letters
        for i, n in enumerate(other.alerts):
            self.alerts[i] -= n
        return self

    def summary(self) -> dict[str, Any]:
        """The JSON shape the analytics API serves."""
        n = self.count
        return {
            "count": n,
            "anomalies": self.anomalies,
            "anomaly_rate": self.anomalies / n if n else 0.0,
            "late": self.late,
            "dead_letters": self.dead_letters,
            "alerts": dict(zip(SEVERITIES, self.alerts, strict=True)),
            "score": {"mean": self.score_sum / n if n else 0.0, "max": self.score_max},
            "metrics": {
                name: {"count": int(m[0]), "mean": m[1] / m[0], "min": m[2], "max": m[3]}
                for name, m in sorted(self.metrics.items())
            },
        }

    def to_wire(self) -> list[Any]:
        return [
            self.count,
            self.anomalies,
            self.late,
            self.dead_letters,
            *self.alerts,
            self.score_sum,
            self.score_max,
            self.metrics,
        ]

    @classmethod
    def from_wire(cls, wire: Sequence[Any]) -> WindowStats:
        out = cls()
        out.count, out.anomalies, out.late, out.dead_letters = (int(x) for x in wire[:4])
        out.alerts = [int(x) for x in wire[4:7]]
        out.score_sum, out.score_max = float(wire[7]), float(wire[8])
        out.metrics = {name: [float(x) for x in m] for name, m in wire[9].items()}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowStats) and self.to_wire() == other.to_wire()

    def __repr__(self) -> str:
        return f"WindowStats({self.to_wire()!r})"


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalyticsWindows:
    """The window layout: tumbling size, hopping size and hop, and how long panes are kept.

    Usually built from `Settings` (`analytics_*`). All in whole seconds of event time; the pane
    is their greatest common divisor, so every window is a union of whole panes.
    """

    tumbling_s: int = 60
    hopping_s: int = 300
    hop_s: int = 60
    retention_s: int = 3600
    pane_s: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tumbling_s", "hopping_s", "hop_s", "retention_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.hop_s > self.hopping_s:
            raise ValueError(f"hop_s ({self.hop_s}) must be <= hopping_s ({self.hopping_s})")
        if self.retention_s < max(self.tumbling_s, self.hopping_s):
            raise ValueError(
                f"retention_s ({self.retention_s}) must hold the largest window "
                f"({max(self.tumbling_s, self.hopping_s)} s)"
            )
        object.__setattr__(self, "pane_s", math.gcd(self.tumbling_s, self.hopping_s, self.hop_s))

    def size_and_hop(self, kind: str) -> tuple[int, int]:
        """(size, hop) of a window kind; a bad kind is a ValueError listing the choices."""
        if kind == "tumbling":
            return self.tumbling_s, self.tumbling_s
        if kind == "hopping":
            return self.hopping_s, self.hop_s
        raise ValueError(f"window must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")

    def pane_of(self, ts: float) -> int:
        """Start (epoch seconds) of the pane that holds event time `ts`."""
        p = self.pane_s
        return int(ts // p) * p

    def expired(self, pane: int, watermark: float) -> bool:
        """True when the pane ended `retention_s` or more before `watermark`."""
        return pane + self.pane_s <= watermark - self.retention_s

    def windows(
        self, kind: str, panes: Mapping[int, WindowStats], watermark: float
    ) -> list[tuple[int, int, WindowStats]]:
        """(start, end, stats) of each `kind` window that has data, oldest first.

        Windows reaching back before the retention horizon (some of their panes already
        deleted) are left out, so every window listed is complete.
        """
        size, hop = self.size_and_hop(kind)
        if not panes:
            return []
        starts: set[int] = set()
        for pane in panes:
            first = ((pane - size) // hop + 1) * hop  # earliest window start covering `pane`
            starts.update(range(first, pane + 1, hop))
        horizon = watermark - self.retention_s
        out: list[tuple[int, int, WindowStats]] = []
        for start in sorted(starts):
            if start + self.pane_s <= horizon:
                continue
            stats = WindowStats()
            for pane in range(start, start + size, self.pane_s):
                if pane in panes:
                    stats.merge(panes[pane])
            out.append((start, start + size, stats))
        return out


# --------------------------------------------------------------------------------------------
# Keys: a head per key (index + running totals) and one record per pane
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Folding a scored batch
# --------------------------------------------------------------------------------------------


def fold_batch(
    scored: Sequence[ScoredReading], origins: Sequence[int], windows: AnalyticsWindows
) -> dict[str, KeyPartial]:
    """Per-device partial aggregates of one scored batch (readings, anomalies, late readings,
    alerts opened; the alert counts go to the pane of the alert's event time). `origins[i]` is
    the batch message `scored[i]` came from (`BatchResult.origins`); a device's partial gets
    the origin of its first reading."""
    partials: dict[str, KeyPartial] = {}
    pane_s = windows.pane_s
    for outcome, origin in zip(scored, origins, strict=True):
        reading = outcome.reading
        partial = partials.get(reading.device_id)
        if partial is None:
            partial = partials[reading.device_id] = KeyPartial(
                origin=origin, site=reading.site, device_type=reading.device_type
            )
        ts = reading.ts
        if ts > partial.watermark:
            partial.watermark = ts
        start = int(ts // pane_s) * pane_s
        stats = partial.panes.get(start)
        if stats is None:
            stats = partial.panes[start] = WindowStats()
        stats.add_reading(reading.metrics, outcome.anomaly_score, outcome.is_anomaly, outcome.late)
        for alert in outcome.alerts:
            if alert.state == "open":
                partial.pane(windows.pane_of(alert.ts)).add_alert(alert.severity)
    return partials


def fold_dead_letters(
    rejections: Sequence[Rejected],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    event_ts: Mapping[int, float],
    windows: AnalyticsWindows,
) -> dict[str, KeyPartial]:
    """Dead letters per message key (decoded as a device id), each counted in the pane of its
    partition's event time `event_ts[partition]` (a dead letter has no trusted time of its
    own). `keys[i]` and `partitions[i]` are batch message `i`'s, the message a rejection's
    `origin` names; a key's partial gets the origin of its first dead letter. Dead letters
    from partitions missing in `event_ts` are skipped."""
    partials: dict[str, KeyPartial] = {}
    for rejected in rejections:
        origin = rejected.origin
        ts = event_ts.get(partitions[origin])
        if ts is None:
            continue
        key = (keys[origin] or b"").decode(errors="replace")
        partial = partials.get(key)
        if partial is None:
            partial = partials[key] = KeyPartial(origin=origin)
        partial.pane(windows.pane_of(ts)).dead_letters += 1
    return partials


def roll_up(
    devices: Mapping[str, KeyPartial],
    dead_letters: Mapping[str, KeyPartial] | None = None,
) -> dict[str, KeyPartial]:
    """Site and fleet partials from device partials. Dead letters count for the fleet only
    (their site is unknown: the message could not be read)."""
    out: dict[str, KeyPartial] = {}
    for partial in devices.values():
        site = partial.site or UNASSIGNED_SITE
        for key in (site, FLEET_KEY):
            target = out.get(key)
            if target is None:
                target = out[key] = KeyPartial(origin=partial.origin)
                if key != FLEET_KEY:
                    target.site = site
            panes = target.panes
            for start, stats in partial.panes.items():
                mine = panes.get(start)
                if mine is None:
                    panes[start] = WindowStats().merge(stats)
                else:
                    mine.merge(stats)
            if partial.watermark > target.watermark:
                target.watermark = partial.watermark
    for partial in (dead_letters or {}).values():
        fleet = out.get(FLEET_KEY)
        if fleet is None:
            fleet = out[FLEET_KEY] = KeyPartial(origin=partial.origin)
        for start, stats in partial.panes.items():
            fleet.pane(start).merge(stats)
    return out


def roll_up_by_source(
    devices: Mapping[str, KeyPartial],
    dead_letters: Mapping[str, KeyPartial],
    partitions: Sequence[int],
    offsets: Mapping[int, int],
) -> dict[tuple[str, int], KeyPartial]:
    """`roll_up` per source partition: (site or `*`, partition) -> partial, each tagged with
    its `source` and `offsets[source]` (the highest input offset of that partition in the
    batch). `partitions[i]` is the partition of batch message `i` (a partial's `origin`).

    One partial per source, not one per batch: a partition's offsets only grow, so the
    aggregating side can tell a re-delivered partial from a new one per source, whichever
    worker owns the partition when it is sent.
    """
    by_source: dict[int, tuple[dict[str, KeyPartial], dict[str, KeyPartial]]] = {}
    for index, group in ((0, devices), (1, dead_letters)):
        for key, partial in group.items():
            source = partitions[partial.origin]
            by_source.setdefault(source, ({}, {}))[index][key] = partial
    out: dict[tuple[str, int], KeyPartial] = {}
    for source, (own, dead) in by_source.items():
        for key, partial in roll_up(own, dead).items():
            partial.source, partial.offset = source, offsets[source]
            out[(key, source)] = partial
    return out


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


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
