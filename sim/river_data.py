"""Real series shipped inside river, as corpus files (`python -m edgeml.sim.river_data OUT`).

- `water-flow`: river's `datasets.WaterFlow`, a pipeline branch's flow in l/s, hourly (with gaps
  and DST changes: the file's own UTC offsets are kept as instants), 2022-03-20 to 2022-05-16,
  1,268 rows. Its docstring describes four anomalous segments, three "low value moments" (water
  losses or maintenance) and "a small peak in the water inflow after the first 2 segments" (a
  pumping operation). `WATER_FLOW_SEGMENTS` locates them in the data: outside them every value
  lies in [99, 107.3] l/s; each low segment is the run from the first reading below 99 to the
  last one before the flow is back above it, the peak is the single 109.68 l/s reading.
- `airline-passengers`: river's `datasets.AirlinePassengers`, monthly totals (thousands),
  1949-01 to 1960-12, 144 rows, trend and yearly seasonality, no labelled anomaly.

Both are written with `sim.corpus.write_corpus`, so `load_labels` / `load_corpus` read them and
`edgeml replay DIR` with the device taken from the file name replays them. Water-flow windows
follow the corpus rule (NAB windows centred on each onset, 10% of the rows in all) but it has
no probation period: its first segment starts at row 93, inside NAB's 15% (row 190), and the
detection issue requires that segment to alert at its onset.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import river.datasets

from edgeml.sim.corpus import Anomaly, CorpusSeries, nab_windows, write_corpus
from edgeml.sim.replay import parse_timestamp
from edgeml.sim.window_score import SeriesLabels

__all__ = [
    "RIVER_DATASETS",
    "WATER_FLOW_SEGMENTS",
    "airline_passengers",
    "main",
    "river_series",
    "water_flow",
    "write_river_data",
]

RIVER_DATASETS = Path(river.datasets.__file__).parent

# (kind, first reading, last reading), timestamps exactly as in river's water-flow.csv
WATER_FLOW_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("low_flow", "2022-03-24T08:00:00+01:00", "2022-03-25T01:00:00+01:00"),
    ("low_flow", "2022-03-29T08:00:00+02:00", "2022-03-29T21:00:00+02:00"),
    ("pumping_peak", "2022-04-03T06:00:00+02:00", "2022-04-03T06:00:00+02:00"),
    ("low_flow", "2022-04-27T15:00:00+02:00", "2022-04-28T06:00:00+02:00"),
)


def _read(
    path: Path, ts_column: str, value_column: str, ts_suffix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    stamps = [parse_timestamp(row[ts_column] + ts_suffix) for row in rows]
    if any(s is None for s in stamps):
        raise ValueError(f"{path}: unreadable timestamp in column {ts_column!r}")
    ts = np.array(stamps, dtype=np.float64)
    return ts, np.array([float(row[value_column]) for row in rows])


def _ts(text: str) -> float:
    value = parse_timestamp(text)
    if value is None:
        raise ValueError(f"bad timestamp {text!r}")
    return value


def water_flow(source: Path = RIVER_DATASETS / "water-flow.csv") -> CorpusSeries:
    """River's water-flow series with its four described segments labelled."""
    ts, values = _read(source, "Time", "Water flow [l/s]")
    anomalies = tuple(Anomaly(k, _ts(a), _ts(b)) for k, a, b in WATER_FLOW_SEGMENTS)
    onsets = [int(np.searchsorted(ts, a.start)) for a in anomalies]
    if any(ts[i] != a.start for i, a in zip(onsets, anomalies, strict=True)):
        raise ValueError(f"{source}: a labelled segment start is not a reading of the file")
    labels = SeriesLabels(nab_windows(ts, onsets), probation_end=float(ts[0]))
    return CorpusSeries(
        "water-flow",
        "flow_lps",
        "holdout",
        ("real", "sampling:1h", "gaps"),
        ts,
        values,
        anomalies,
        labels,
        2,
    )


def airline_passengers(
    source: Path = RIVER_DATASETS / "airline-passengers.csv",
) -> CorpusSeries:
    """River's monthly airline passengers (months as the first day, 00:00 UTC; no labels)."""
    ts, values = _read(source, "month", "passengers", "-01T00:00:00+00:00")
    return CorpusSeries(
        "airline-passengers",
        "passengers",
        "holdout",
        ("real", "monthly", "yearly-cycle"),
        ts,
        values,
        (),
        SeriesLabels(probation_end=float(ts[0])),
        0,
    )


def river_series() -> list[CorpusSeries]:
    return [water_flow(), airline_passengers()]


def write_river_data(outdir: Path) -> Path:
    """`water-flow.csv`, `airline-passengers.csv` and their `labels.json` in `outdir`."""
    return write_corpus(river_series(), outdir)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m edgeml.sim.river_data OUTDIR", file=sys.stderr)
        return 2
    series = river_series()
    path = write_corpus(series, Path(args[0]))
    print(", ".join(f"{s.name}: {s.ts.size} rows" for s in series) + f" -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
