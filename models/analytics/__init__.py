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

Modules, in dataflow order: `stats` (one stretch's aggregates), `windows` (the layout),
`keys` (heads and partials, with their bytes), `store` (storage, merging, retention), `fold`
(a scored batch -> partials), `views` (JSON for the API). Import from this package.
"""

from __future__ import annotations

from edgeml.models.analytics.fold import fold_batch, fold_dead_letters, roll_up, roll_up_by_source
from edgeml.models.analytics.keys import KeyHead, KeyPartial, pane_key, parse_pane_key
from edgeml.models.analytics.stats import (
    FLEET_KEY,
    SEVERITIES,
    UNASSIGNED_SITE,
    WINDOW_KINDS,
    WindowStats,
)
from edgeml.models.analytics.store import DictPaneStore, PaneStore, apply_partial, sweep_idle
from edgeml.models.analytics.views import head_summary, key_view
from edgeml.models.analytics.windows import AnalyticsWindows

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
