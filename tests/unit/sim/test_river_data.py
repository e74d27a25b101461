"""River's bundled real series converted to replayable corpus files, water-flow labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from river import datasets

from edgeml.sim.corpus import LABELS_FILE, load_corpus, load_labels
from edgeml.sim.replay import ReplayColumns, parse_timestamp, read_rows, to_readings
from edgeml.sim.river_data import RIVER_DATASETS, airline_passengers, main, water_flow


def test_row_counts_match_river_datasets() -> None:
    assert water_flow().ts.size == datasets.WaterFlow().n_samples == 1268
    assert airline_passengers().ts.size == datasets.AirlinePassengers().n_samples == 144


def test_water_flow_segments_are_the_only_departures_from_normal_flow() -> None:
    s = water_flow()
    assert len(s.anomalies) == len(s.labels.windows) == 4
    inside = np.zeros(s.ts.size, dtype=bool)
    for anomaly, (lo, hi) in zip(s.anomalies, s.labels.windows, strict=True):
        seg = (s.ts >= anomaly.start) & (s.ts <= anomaly.end)
        inside |= seg
        assert lo <= anomaly.start <= hi
        if anomaly.kind == "low_flow":
            assert np.all(s.values[seg] < 99.0) and seg.sum() >= 12
        else:
            assert s.values[seg].tolist() == [s.values.max()]
    assert np.all((s.values[~inside] >= 99.0) & (s.values[~inside] <= 107.3))
    # the peak comes after the first two low segments, as river's docstring says
    assert [a.kind for a in s.anomalies] == ["low_flow", "low_flow", "pumping_peak", "low_flow"]


def test_written_files_replay_with_the_source_instants(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    source = {
        "water-flow": [
            parse_timestamp(r["Time"]) for r in read_rows(RIVER_DATASETS / "water-flow.csv")
        ],
        "airline-passengers": [
            parse_timestamp(r["month"] + "-01T00:00:00Z")
            for r in read_rows(RIVER_DATASETS / "airline-passengers.csv")
        ],
    }
    for name, stamps in source.items():
        path = tmp_path / f"{name}.csv"
        readings = list(to_readings(read_rows(path), ReplayColumns(device=path.stem)))
        assert [r.ts for r in readings] == stamps
        assert {r.device_id for r in readings} == {name}
    labels = load_labels(tmp_path / LABELS_FILE)
    assert labels["water-flow"] == water_flow().labels
    assert labels["airline-passengers"].windows == ()
    assert [s.ts.size for s in load_corpus(tmp_path)] == [1268, 144]
