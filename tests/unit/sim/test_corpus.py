"""Evaluation corpus: determinism, coverage of the regimes, labels, files that replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeml.sim.corpus import (
    LABELS_FILE,
    WINDOW_FRACTION,
    CorpusSeries,
    build_corpus,
    load_corpus,
    load_labels,
    main,
    split_of,
    write_corpus,
)
from edgeml.sim.replay import ReplayColumns, read_rows, to_readings
from edgeml.sim.window_score import PROFILES, score_alarms


@pytest.fixture(scope="module")
def corpus() -> list[CorpusSeries]:
    return build_corpus(seed=0)


def _tagged(corpus: list[CorpusSeries], tag: str) -> list[CorpusSeries]:
    return [s for s in corpus if tag in s.tags]


def test_same_seed_same_corpus_other_seed_other_values(corpus: list[CorpusSeries]) -> None:
    again = build_corpus(seed=0)
    assert [s.name for s in again] == [s.name for s in corpus]
    for one, two in zip(corpus, again, strict=True):
        assert np.array_equal(one.ts, two.ts)
        assert np.array_equal(one.values, two.values)
        assert one.labels == two.labels and one.anomalies == two.anomalies
    other = build_corpus(seed=1)
    assert (
        sum(not np.array_equal(a.values, b.values) for a, b in zip(corpus, other, strict=True))
        >= 40
    )


def test_at_least_40_series_split_half_and_half_by_name(corpus: list[CorpusSeries]) -> None:
    names = [s.name for s in corpus]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert all(s.split == split_of(s.name) for s in corpus)
    tune = [s for s in corpus if s.split == "tune"]
    assert len(tune) * 2 == len(corpus)
    with pytest.raises(ValueError, match="end in -a"):
        split_of("daily-5min")


REQUIRED_TAGS = (
    "sampling:1s", "sampling:10s", "sampling:30s", "sampling:1min", "sampling:5min",
    "sampling:15min", "sampling:1h", "irregular", "gaps", "repeated-ts", "daily", "weekly",
    "daily-step", "counts", "bursty", "quantized", "flat", "level-shift", "drift",
    "noise-change", "stuck",
)  # fmt: skip


@pytest.mark.parametrize("tag", REQUIRED_TAGS)
def test_every_regime_is_in_both_splits(corpus: list[CorpusSeries], tag: str) -> None:
    assert {s.split for s in _tagged(corpus, tag)} == {"tune", "holdout"}


def test_regime_tags_describe_the_data(corpus: list[CorpusSeries]) -> None:
    for s in corpus:
        steps = np.diff(s.ts)
        for tag in s.tags:
            if tag.startswith("sampling:"):
                unit = {"s": 1, "min": 60, "h": 3600}
                text = tag.removeprefix("sampling:")
                number = text.rstrip("minsh")
                expected = int(number) * unit[text[len(number) :]]
                assert np.all(steps == expected), s.name
        if "repeated-ts" in s.tags:
            assert np.any(steps == 0), s.name
        if "gaps" in s.tags:
            assert steps.max() > 10 * np.median(steps), s.name
        if "counts" in s.tags:
            assert np.all(s.values >= 0) and np.all(s.values == np.round(s.values)), s.name
        if "quantized" in s.tags:
            assert np.unique(s.values).size <= 20, s.name
        if "flat" in s.tags:  # a stretch of at least 30 readings of one exact value
            change = np.flatnonzero(np.diff(s.values) != 0)
            assert np.diff(np.concatenate([[-1], change, [s.values.size - 1]])).max() >= 30
        if "irregular" in s.tags:
            assert np.unique(steps).size > 10, s.name


def test_stuck_series_varied_before_they_stuck(corpus: list[CorpusSeries]) -> None:
    for s in _tagged(corpus, "stuck"):
        stuck = next(a for a in s.anomalies if a.kind == "stuck")
        before = s.values[s.ts < stuck.start]
        during = s.values[(s.ts >= stuck.start) & (s.ts <= stuck.end)]
        assert np.unique(before[-200:]).size > 20 and np.unique(during).size == 1, s.name


def test_labels_lie_inside_their_series(corpus: list[CorpusSeries]) -> None:
    for s in corpus:
        first, last = s.ts[0], s.ts[-1]
        assert s.anomalies and len(s.labels.windows) == len(s.anomalies), s.name
        assert first < s.labels.probation_end <= s.labels.windows[0][0], s.name
        for anomaly, (lo, hi) in zip(s.anomalies, s.labels.windows, strict=True):
            assert first <= lo <= anomaly.start <= hi <= last, s.name
            assert anomaly.start <= anomaly.end <= last, s.name
        inside = sum(int(np.sum((s.ts >= lo) & (s.ts <= hi))) for lo, hi in s.labels.windows)
        assert 0.8 * WINDOW_FRACTION <= inside / s.ts.size <= 1.1 * WINDOW_FRACTION, s.name


def test_files_replay_and_labels_round_trip(corpus: list[CorpusSeries], tmp_path: Path) -> None:
    path = write_corpus(corpus, tmp_path, seed=0)
    assert path == tmp_path / LABELS_FILE
    assert len(list(tmp_path.glob("*.csv"))) == len(corpus)
    labels = load_labels(path)
    assert labels == {s.name: s.labels for s in corpus}
    holdout = load_labels(path, "holdout")
    assert set(holdout) == {s.name for s in corpus if s.split == "holdout"}
    with pytest.raises(ValueError, match="choose one of tune, holdout"):
        load_labels(path, "test")
    for s in (corpus[0], *_tagged(corpus, "repeated-ts")):
        csv_path = tmp_path / f"{s.name}.csv"
        readings = list(to_readings(read_rows(csv_path), ReplayColumns(device=csv_path.stem)))
        assert [r.ts for r in readings] == s.ts.tolist()
        assert [r.metrics for r in readings] == [{s.metric: v} for v in s.values.tolist()]
        assert {r.device_id for r in readings} == {s.name}
    loaded = load_corpus(tmp_path, "tune")
    assert [s.name for s in loaded] == [s.name for s in corpus if s.split == "tune"]
    for one in loaded:
        original = next(s for s in corpus if s.name == one.name)
        assert np.array_equal(one.ts, original.ts) and np.array_equal(one.values, original.values)
        assert one.anomalies == original.anomalies and one.tags == original.tags


def test_main_writes_the_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "3"]) == 0
    doc = json.loads((tmp_path / "out" / LABELS_FILE).read_text())
    assert doc["seed"] == 3 and len(doc["series"]) == len(build_corpus(3))
    assert "series" in capsys.readouterr().out
    assert main([]) == 2


def test_corpus_labels_score_0_when_silent_and_100_when_perfect(
    corpus: list[CorpusSeries],
) -> None:
    labels = {s.name: s.labels for s in corpus}
    perfect = {s.name: [lo for lo, _ in s.labels.windows] for s in corpus}
    assert {p: r.score for p, r in score_alarms({}, labels).items()} == dict.fromkeys(PROFILES, 0.0)
    for result in score_alarms(perfect, labels).values():
        assert result.score == pytest.approx(100.0)
        assert result.detected == result.windows == sum(len(s.anomalies) for s in corpus)
