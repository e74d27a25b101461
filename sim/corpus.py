"""A labelled, deterministic corpus of univariate series (`python -m edgeml.sim.corpus OUTDIR`).

`build_corpus(seed)` makes two variants (`-a`, `-b`) of every regime in `sim.corpus_regimes`
(44 series: 1 s to 1 h sampling, irregular sampling with gaps and repeated timestamps, daily and
weekly cycles, a daily step at a fixed hour, Poisson and negative-binomial counts, quantized
values, exactly flat stretches, persistent level shifts, drifts, noise changes, metrics that get
stuck). Each series draws from its own generator seeded by `(seed, crc32(name))`, so adding a
regime changes no other series.

Labels follow NAB: each anomaly gets one window centred on its onset, all windows of a series
together spanning 10% of its readings (`WINDOW_FRACTION`); the probation period is the first 15%
of readings, at most 750. The split is fixed by the name: `-a` series are `tune`, `-b` series
are `holdout` (never tune on those), so both halves cover every regime.

`write_corpus(series, outdir)` writes one CSV per series (`ts,<metric>`: ISO-8601 UTC with a
`Z`, as `sim.replay` reads it; the device id is the file name) and `labels.json`;
`load_labels(path, split)` reads the labels back as `SeriesLabels` for `sim.window_score`, and
`load_corpus(outdir)` reads the whole corpus back.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.sim.corpus_regimes import REGIMES, Draft
from edgeml.sim.replay import parse_timestamp
from edgeml.sim.window_score import SeriesLabels

__all__ = [
    "LABELS_FILE",
    "SPLITS",
    "WINDOW_FRACTION",
    "Anomaly",
    "CorpusSeries",
    "build_corpus",
    "load_corpus",
    "load_labels",
    "main",
    "nab_labels",
    "nab_windows",
    "split_of",
    "write_corpus",
]

LABELS_FILE = "labels.json"
LABELS_FORMAT = "edgeml-corpus-labels/1"
SPLITS = ("tune", "holdout")
WINDOW_FRACTION = 0.10  # NAB: windows span 10% of a file, shared among its anomalies
PROBATION_FRACTION, PROBATION_MAX = 0.15, 750  # NAB's probationary period
_VARIANTS = {"a": "tune", "b": "holdout"}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One injected anomaly: its kind and the event times of its first and last reading."""

    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class CorpusSeries:
    """One labelled series: readings (`ts` epoch seconds, `values`) and its ground truth."""

    name: str
    metric: str
    split: str
    tags: tuple[str, ...]
    ts: np.ndarray
    values: np.ndarray
    anomalies: tuple[Anomaly, ...]
    labels: SeriesLabels
    decimals: int = 2


def split_of(name: str) -> str:
    """`tune` or `holdout`, from the name's variant suffix (`-a` / `-b`)."""
    suffix = name.rpartition("-")[2]
    if suffix not in _VARIANTS:
        raise ValueError(f"{name!r}: corpus names end in -a (tune) or -b (holdout)")
    return _VARIANTS[suffix]


def nab_windows(ts: np.ndarray, onsets: Sequence[int]) -> tuple[tuple[float, float], ...]:
    """NAB windows: one per onset index, centred on it, together `WINDOW_FRACTION` of `ts`."""
    n = ts.size
    width = max(2, int(WINDOW_FRACTION * n / max(1, len(onsets))))
    windows = []
    for onset in sorted(onsets):
        left = max(0, onset - width // 2)
        right = min(n - 1, left + width - 1)
        windows.append((float(ts[left]), float(ts[right])))
    return tuple(windows)


def nab_labels(ts: np.ndarray, onsets: Sequence[int]) -> SeriesLabels:
    """NAB windows around `onsets` (indexes into `ts`) and NAB's probation period."""
    probation = min(int(PROBATION_FRACTION * ts.size), PROBATION_MAX)
    return SeriesLabels(nab_windows(ts, onsets), probation_end=float(ts[probation]))


def _label(name: str, draft: Draft) -> CorpusSeries:
    ts = np.asarray(draft.ts, dtype=np.int64)
    values = np.round(np.asarray(draft.values, dtype=np.float64), draft.decimals)
    if ts.size != values.size or np.any(np.diff(ts) < 0):
        raise ValueError(f"{name}: timestamps must be non-decreasing, one per value")
    labels = nab_labels(ts, [first for _, first, _ in draft.anomalies])
    if labels.windows and labels.windows[0][0] < labels.probation_end:
        raise ValueError(f"{name}: a window starts inside the probation period")
    anomalies = tuple(
        Anomaly(kind, float(ts[first]), float(ts[last])) for kind, first, last in draft.anomalies
    )
    return CorpusSeries(
        name,
        draft.metric,
        split_of(name),
        draft.tags,
        ts.astype(np.float64),
        values,
        anomalies,
        labels,
        draft.decimals,
    )


def build_corpus(seed: int = 0) -> list[CorpusSeries]:
    """Every regime in two variants, in a fixed order; same seed, same corpus."""
    out = []
    for regime, make in REGIMES.items():
        for variant in _VARIANTS:
            name = f"{regime}-{variant}"
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            out.append(_label(name, make(rng)))
    return out


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


def write_corpus(series: Iterable[CorpusSeries], outdir: Path, seed: int | None = None) -> Path:
    """One `<name>.csv` per series plus `labels.json` in `outdir` (created); returns the
    labels path."""
    outdir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for s in series:
        stamps = np.datetime_as_string(s.ts.astype(np.int64).astype("datetime64[s]"), "s")
        with (outdir / f"{s.name}.csv").open("w", newline="") as handle:
            handle.write(f"ts,{s.metric}\n")
            handle.writelines(
                f"{stamp}Z,{value:.{s.decimals}f}\n"
                for stamp, value in zip(stamps.tolist(), s.values.tolist(), strict=True)
            )
        entries[s.name] = {
            "file": f"{s.name}.csv",
            "metric": s.metric,
            "split": s.split,
            "tags": list(s.tags),
            "rows": int(s.ts.size),
            "start": _iso(float(s.ts[0])),
            "end": _iso(float(s.ts[-1])),
            "probation_end": _iso(s.labels.probation_end),
            "anomalies": [
                {"kind": a.kind, "start": _iso(a.start), "end": _iso(a.end)} for a in s.anomalies
            ],
            "windows": [[_iso(lo), _iso(hi)] for lo, hi in s.labels.windows],
        }
    path = outdir / LABELS_FILE
    doc = {
        "format": LABELS_FORMAT,
        "seed": seed,
        "window_fraction": WINDOW_FRACTION,
        "series": entries,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _ts(text: str) -> float:
    value = parse_timestamp(text)
    if value is None:
        raise ValueError(f"bad timestamp {text!r} in labels")
    return value


def _read_doc(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if doc.get("format") != LABELS_FORMAT:
        raise ValueError(f"{path}: not a {LABELS_FORMAT} file")
    series: dict[str, Any] = doc["series"]
    return series


def load_labels(path: Path, split: str | None = None) -> dict[str, SeriesLabels]:
    """Labels by series name (= device id), optionally only one split (`tune` / `holdout`)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return {
        name: SeriesLabels(
            windows=tuple((_ts(lo), _ts(hi)) for lo, hi in entry["windows"]),
            probation_end=_ts(entry["probation_end"]),
        )
        for name, entry in _read_doc(path).items()
        if split is None or entry["split"] == split
    }


def load_corpus(outdir: Path, split: str | None = None) -> list[CorpusSeries]:
    """A written corpus read back (CSV values as written, i.e. rounded to `decimals`)."""
    labels = load_labels(outdir / LABELS_FILE, split)
    out = []
    for name, entry in _read_doc(outdir / LABELS_FILE).items():
        if name not in labels:
            continue
        with (outdir / entry["file"]).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        metric = entry["metric"]
        text = [row[metric] for row in rows]
        decimals = len(text[0].partition(".")[2]) if text else 0
        anomalies = tuple(
            Anomaly(a["kind"], _ts(a["start"]), _ts(a["end"])) for a in entry["anomalies"]
        )
        out.append(
            CorpusSeries(
                name,
                metric,
                entry["split"],
                tuple(entry["tags"]),
                np.array([_ts(row["ts"]) for row in rows]),
                np.array(text, dtype=np.float64),
                anomalies,
                labels[name],
                decimals,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edgeml.sim.corpus OUTDIR [SEED]`: write the corpus, print a one-line summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        print("usage: python -m edgeml.sim.corpus OUTDIR [SEED]", file=sys.stderr)
        return 2
    seed = int(args[1]) if len(args) == 2 else 0
    series = build_corpus(seed)
    path = write_corpus(series, Path(args[0]), seed)
    rows = sum(s.ts.size for s in series)
    windows = sum(len(s.labels.windows) for s in series)
    print(f"{len(series)} series, {rows} readings, {windows} windows -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
