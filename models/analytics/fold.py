"""Folding a scored batch into per-key partials: devices, dead letters, sites and the fleet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from edgeml.models.analytics.keys import KeyPartial
from edgeml.models.analytics.stats import FLEET_KEY, UNASSIGNED_SITE, WindowStats
from edgeml.models.analytics.windows import AnalyticsWindows

if TYPE_CHECKING:  # only types: `Settings` validates windows with this package, keep it light
    from edgeml.models.pipeline import Rejected
    from edgeml.models.scoring import ScoredReading

__all__ = ["fold_batch", "fold_dead_letters", "roll_up", "roll_up_by_source"]


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
