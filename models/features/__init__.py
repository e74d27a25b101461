"""Windowed features per device and per metric, in event time only (no wall clock anywhere).

For every metric of every reading, each configured window (default: 10 s and 60 s of event
time; count windows such as the last 20 readings for slow sensors) yields
`mean, std, min, max, slope, roc, ewma, z`, after the reading's own `value`:

- `slope`: least-squares slope over the window (units per second of event time);
- `roc`: (last - first) / (t_last - t_first) across the window;
- `ewma`: exponentially weighted mean, time constant = the window's length;
- `z`: the reading against its window *without* itself, `(x - mean') / std'`.

Readings within `grace_s` of the device's watermark (its largest event time so far) are
inserted in event-time order even when they arrive out of order. Older ones are *late*: they
are featurized against the current windows but change nothing. A device silent for longer
than its idle span (`idle_timeout_s` of event time, or `idle_gaps` times its typical spacing
for a slow sensor: `FeatureExtractor.idle_after`) has its windows reset
(`DeviceFeatures.reset`), and a metric not seen for that long is dropped, so devices may
change their metric set over time.

Jumps ahead need a second reading. One reading with a timestamp far in the future (a clock
glitch, still inside validation's `max_future_s`) used to move the watermark with it, and
every normal reading after it was late until event time caught up (3,000 s ahead: 3,000
readings of a 1 Hz device late, their alerts suppressed). Now a reading more than
`grace_s + jump_gaps * gap` ahead of the watermark (`gap`: the device's typical spacing, an
exponential mean of its watermark advances) is *held*: featurized, not late, but the
watermark stays. The next reading decides: at or after the held one (minus `grace_s`), the
jump is confirmed (a device back from a silence, a slow sensor) and applied; back near the
watermark, the held one was an outlier and is forgotten. A held reading is not inserted into
the windows, except when it is more than the idle span ahead: then the windows are reset
and it starts them (as a device back from idle does), and an outlier found later resets them
again (at most one window length of history is lost). An unconfirmed jump therefore never
makes the next reading late; two readings that agree on a new time always move it.

Metric values are clamped to +-`VALUE_LIMIT` (1e100) before any arithmetic: validation
bounds them far lower (`ValidationLimits.max_abs_value`), this is defence in depth so squares
and sums of squares here and in the detectors stay finite whatever the caller passes.

Usually created once per process as `FeatureExtractor(FeatureConfig())`; per-device state is
`extractor.new_state()`, updated with `extractor.update(state, reading)`.

Modules: `config` (which windows, `WindowSpec`, `FeatureConfig`), `windows` (a device's window
state and its serialization: `MetricWindows`, `DeviceFeatures`), `extractor` (`FeatureExtractor`,
the hot path, and its output `FeatureRow`). Import from this package.
"""

from __future__ import annotations

from edgeml.models.features.config import PER_WINDOW, FeatureConfig, WindowSpec
from edgeml.models.features.extractor import VALUE_LIMIT, FeatureExtractor, FeatureRow
from edgeml.models.features.windows import DeviceFeatures, MetricWindows

__all__ = [
    "PER_WINDOW",
    "VALUE_LIMIT",
    "DeviceFeatures",
    "FeatureConfig",
    "FeatureExtractor",
    "FeatureRow",
    "MetricWindows",
    "WindowSpec",
]
