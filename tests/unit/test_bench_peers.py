"""The peers' job (`bench.peers.job`): what quix-streams and bytewax compute per reading.

Runs with the main venv's river: the JSON-state form (quix) and the river.stats form (bytewax)
must give the same outputs, the window must be 60 s of event time, and state must survive a
JSON round trip (quix serialises it between messages)."""

from __future__ import annotations

import json
import math

import pytest

from bench.peers import _summarize
from bench.peers.job import DeviceStats, RiverDeviceStats, ew_matches_river, score


def _reading(seq: int, ts: float, **metrics: float) -> dict[str, object]:
    return {"device_id": "d", "seq": seq, "ts": ts, "sent_at": ts + 0.5, "metrics": metrics}


def test_the_ew_recurrences_are_river_stats() -> None:
    assert ew_matches_river()


def test_json_state_and_river_objects_give_the_same_outputs() -> None:
    state: dict[str, list[object]] | None = None
    river = RiverDeviceStats()
    for i in range(300):
        reading = _reading(i, 1000.0 + i * 0.7, t=20 + math.sin(i / 5), h=40 + (i % 9))
        quix = DeviceStats(state)
        ours = score(quix, reading)
        state = json.loads(json.dumps(quix.state))  # as quix's store keeps it
        theirs = score(river, reading)
        assert ours.keys() == theirs.keys()
        for key in ("mean", "std", "z"):
            for metric in ("t", "h"):
                assert ours[key][metric] == pytest.approx(theirs[key][metric], rel=1e-9, abs=1e-9)


def test_the_window_is_sixty_seconds_of_event_time() -> None:
    stats = DeviceStats()
    stats.update(_reading(0, 0.0, x=100.0))
    stats.update(_reading(1, 30.0, x=0.0))
    assert stats.update(_reading(2, 59.9, x=0.0))["mean"]["x"] == pytest.approx(100 / 3)
    assert stats.update(_reading(3, 60.0, x=0.0))["mean"]["x"] == 0.0  # ts 0 left the window


def test_an_envelope_gets_one_output_per_reading_in_order() -> None:
    out = score(DeviceStats(), {"readings": [_reading(i, float(i), x=1.0) for i in range(3)]})
    assert [p["seq"] for p in out["predictions"]] == [0, 1, 2]


def test_ratios_are_c_over_each_peer_per_round() -> None:
    runs = [
        {"system": s, "round": r, "rate": rate, "cpu_us_per_reading": 1.0, "lost": 0,
         "duplicates": 0}
        for r, rates in ((1, (10.0, 20.0, 40.0, 5.0)), (2, (30.0, 30.0, 60.0, 10.0)))
        for s, rate in zip(("C", "quix-rocksdb", "quix-memory", "bytewax"), rates, strict=True)
    ]  # fmt: skip
    summary = _summarize(runs)
    assert summary["ratio"] == {"quix-rocksdb": 0.75, "quix-memory": 0.375, "bytewax": 2.5}
    assert summary["rate"]["C"] == 20.0
