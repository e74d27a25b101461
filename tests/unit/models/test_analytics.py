"""Window analytics (`models.analytics`): aggregates, window layout, storage, batch folding."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest

from edgeml.models.analytics import (
    FLEET_KEY,
    UNASSIGNED_SITE,
    AnalyticsWindows,
    DictPaneStore,
    KeyHead,
    KeyPartial,
    WindowStats,
    apply_partial,
    fold_batch,
    fold_dead_letters,
    key_view,
    pane_key,
    parse_pane_key,
    roll_up,
    roll_up_by_source,
    sweep_idle,
)
from edgeml.models.pipeline import BatchResult, Inbound, ReadingPipeline, Rejected
from edgeml.models.scoring import ScoredReading, Scorer
from edgeml.topics.records import AnomalyAlert, SensorReading

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a multiple of every window below


def scored(
    device: str,
    ts: float,
    metrics: dict[str, float],
    *,
    score: float = 0.1,
    anomaly: bool = False,
    late: bool = False,
    site: str | None = "plant-a",
    alerts: list[AnomalyAlert] | None = None,
) -> ScoredReading:
    reading = SensorReading(device, ts, 0, metrics, site=site, device_type="pump")
    return ScoredReading(reading, score, 0.0, anomaly, late, alerts or [])


def alert(device: str, ts: float, severity: str, state: str = "open") -> AnomalyAlert:
    return AnomalyAlert(f"{device}-{ts}", device, state, severity, ts, ts, 0, 0.9, 0.5)  # type: ignore[arg-type]


# --- WindowStats -------------------------------------------------------------------------------

Row = tuple[dict[str, float], float, bool, bool]  # metrics, score, anomaly, late


def t(value: float, score: float = 0.0, anomaly: bool = False, late: bool = False) -> Row:
    return {"t": value}, score, anomaly, late


def m(count: int, mean: float, lo: float, hi: float) -> dict[str, float]:
    return {"count": count, "mean": mean, "min": lo, "max": hi}


STATS_CASES: list[tuple[str, list[Row], dict[str, Any]]] = [
    ("empty", [], {"count": 0, "anomaly_rate": 0.0, "metrics": {}}),
    ("empty-score", [], {"score": {"mean": 0.0, "max": 0.0}}),
    ("one", [t(2.5, 0.2)], {"count": 1, "anomalies": 0, "metrics": {"t": m(1, 2.5, 2.5, 2.5)}}),
    ("mean-min-max", [t(1.0), t(3.0), t(2.0)], {"count": 3, "metrics": {"t": m(3, 2.0, 1.0, 3.0)}}),
    ("score", [t(1.0, 0.1), t(1.0, 0.3), t(1.0, 0.2)],
     {"score": {"mean": pytest.approx(0.2), "max": 0.3}}),
    ("anomalies-and-late", [t(1, 0.9, True), t(1, late=True), t(1, 0.8, True, True), t(1)],
     {"count": 4, "anomalies": 2, "anomaly_rate": 0.5, "late": 2}),
    ("metric-missing-in-some", [({"t": 1.0, "h": 10.0}, 0.0, False, False), t(3.0)],
     {"count": 2, "metrics": {"h": m(1, 10.0, 10.0, 10.0), "t": m(2, 2.0, 1.0, 3.0)}}),
    ("negative-values", [t(-5.0), t(-1.0), t(-9.0)], {"metrics": {"t": m(3, -5.0, -9.0, -1.0)}}),
]  # fmt: skip


@pytest.mark.parametrize(("readings", "expected"), [c[1:] for c in STATS_CASES],
                         ids=[c[0] for c in STATS_CASES])  # fmt: skip
def test_window_stats_summary(readings: list[Row], expected: dict[str, Any]) -> None:
    stats = WindowStats()
    for metrics, score, anomaly, late in readings:
        stats.add_reading(metrics, score, anomaly, late)
    summary = stats.summary()
    for key, value in expected.items():
        assert summary[key] == value, key


def test_alerts_count_by_severity_and_reject_unknown_ones() -> None:
    stats = WindowStats()
    for severity in ("info", "critical", "critical", "warning"):
        stats.add_alert(severity)
    assert stats.summary()["alerts"] == {"info": 1, "warning": 1, "critical": 2}
    with pytest.raises(ValueError, match="info, warning, critical"):
        stats.add_alert("fatal")


def _random_stats(rng: random.Random, n: int) -> WindowStats:
    stats = WindowStats()
    for _ in range(n):
        metrics = {name: rng.uniform(-50, 50) for name in ("t", "h") if rng.random() < 0.8}
        stats.add_reading(metrics, rng.random(), rng.random() < 0.1, rng.random() < 0.05)
        if rng.random() < 0.05:
            stats.add_alert(rng.choice(("info", "warning", "critical")))
        stats.dead_letters += rng.random() < 0.02
    return stats


@pytest.mark.parametrize("seed", range(5))
def test_merge_is_associative_and_commutative(seed: int) -> None:
    rng = random.Random(seed)
    a, b, c = (_random_stats(rng, rng.randint(0, 40)) for _ in range(3))

    def copy(s: WindowStats) -> WindowStats:
        return WindowStats.from_wire(s.to_wire())

    left = copy(a).merge(copy(b)).merge(copy(c))
    right = copy(c).merge(copy(b).merge(copy(a)))
    wl, wr = left.to_wire(), right.to_wire()
    assert wl[:7] == wr[:7]  # counts exact
    assert wl[7] == pytest.approx(wr[7])
    assert wl[8] == wr[8]
    assert set(wl[9]) == set(wr[9])
    for name, m in wl[9].items():
        assert m[0] == wr[9][name][0] and m[2:] == wr[9][name][2:]
        assert m[1] == pytest.approx(wr[9][name][1])


def test_wire_round_trip_is_exact() -> None:
    stats = _random_stats(random.Random(7), 50)
    again = WindowStats.from_wire(orjson.loads(orjson.dumps(stats.to_wire())))
    assert again == stats


def test_counts_and_subtract_counts_undo_each_other() -> None:
    total = _random_stats(random.Random(1), 30)
    part = _random_stats(random.Random(2), 10)
    before = total.counts()
    total.merge(part).subtract_counts(part)
    assert total.counts() == before


# --- the window layout -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tumbling", "hopping", "hop", "pane"),
    [(60, 300, 60, 60), (60, 300, 30, 30), (10, 45, 15, 5), (60, 60, 60, 60), (90, 300, 60, 30)],
)
def test_pane_is_the_gcd_of_sizes_and_hop(tumbling: int, hopping: int, hop: int, pane: int) -> None:
    windows = AnalyticsWindows(tumbling, hopping, hop, retention_s=600)
    assert windows.pane_s == pane
    assert windows.pane_of(T0 + pane - 0.001) == T0
    assert windows.pane_of(T0 + pane) == T0 + pane
    assert windows.pane_of(T0 - 0.5) == T0 - pane


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tumbling_s": 0}, "tumbling_s must be > 0"),
        ({"hop_s": 400}, "hop_s .* must be <= hopping_s"),
        ({"retention_s": 100}, "retention_s .* must hold the largest window"),
    ],
)
def test_bad_layouts_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalyticsWindows(**kwargs)


def test_unknown_window_kind_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="tumbling, hopping"):
        AnalyticsWindows().size_and_hop("sliding")


def _one(count: int) -> WindowStats:
    stats = WindowStats()
    for _ in range(count):
        stats.add_reading({"t": 1.0}, 0.0, False, False)
    return stats


@pytest.mark.parametrize(
    ("kind", "panes", "expected"),
    [
        # panes at minute offsets -> (window start offset in minutes, count)
        ("tumbling", {0: 1, 1: 2, 3: 4}, [(0, 1), (1, 2), (3, 4)]),
        ("hopping", {0: 1}, [(-4, 1), (-3, 1), (-2, 1), (-1, 1), (0, 1)]),
        ("hopping", {0: 1, 2: 10}, [(-4, 1), (-3, 1), (-2, 11), (-1, 11), (0, 11),
                                    (1, 10), (2, 10)]),
        ("hopping", {0: 1, 9: 5}, [(-4, 1), (-3, 1), (-2, 1), (-1, 1), (0, 1),
                                   (5, 5), (6, 5), (7, 5), (8, 5), (9, 5)]),
    ],
)  # fmt: skip
def test_windows_are_unions_of_panes(
    kind: str, panes: dict[int, int], expected: list[tuple[int, int]]
) -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=3600)
    stored = {T0 + 60 * minute: _one(n) for minute, n in panes.items()}
    listed = windows.windows(kind, stored, watermark=T0 + 60 * max(panes))
    size = 60 if kind == "tumbling" else 300
    assert [((s - T0) // 60, stats.count) for s, _, stats in listed] == expected
    assert all(end - start == size for start, end, _ in listed)


def test_windows_reaching_past_retention_are_not_listed() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=600)
    stored = {T0 + 60 * m: _one(1) for m in range(20)}
    watermark = T0 + 60 * 19 + 30
    listed = windows.windows("tumbling", stored, watermark)
    assert [s for s, _, _ in listed] == [T0 + 60 * m for m in range(9, 20)]  # 9: ends after 570
    assert all(
        s + 60 > watermark - 600 for s, _, _ in windows.windows("hopping", stored, watermark)
    )


# --- storage -------------------------------------------------------------------------------------


def test_pane_keys_round_trip_even_with_at_signs() -> None:
    assert parse_pane_key(pane_key("site@a@b", T0)) == ("site@a@b", T0)


def test_head_round_trip() -> None:
    head = KeyHead(
        3, T0 + 1.5, "plant-a", "pump", [T0, T0 + 60], _random_stats(random.Random(3), 5)
    )
    assert KeyHead.from_bytes(head.to_bytes()) == head
    assert KeyHead.from_bytes(KeyHead(0).to_bytes()).watermark == -math.inf
    head.sources = {0: 17, 3: 9}
    assert KeyHead.from_bytes(head.to_bytes()).sources == {0: 17, 3: 9}
    assert b"src" not in KeyHead(0).to_bytes()  # device heads keep their bytes


def _independent(readings: list[ScoredReading], size: int) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (device, tumbling window): count and per metric [n, sum, min, max], one pass."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in readings:
        start = int(r.reading.ts // size) * size
        entry = out.setdefault((r.reading.device_id, start), {"count": 0, "metrics": {}})
        entry["count"] += 1
        for name, v in r.reading.metrics.items():
            m = entry["metrics"].setdefault(name, [0, 0.0, math.inf, -math.inf])
            m[0] += 1
            m[1] += v
            m[2] = min(m[2], v)
            m[3] = max(m[3], v)
    return out


def _stream(seed: int, devices: int = 3, per_device: int = 400) -> list[ScoredReading]:
    rng = random.Random(seed)
    out = []
    for i in range(per_device):
        for d in range(devices):
            ts = T0 + i * 1.0 + rng.random() * 0.5
            out.append(scored(f"dev-{d}", ts, {"t": round(rng.gauss(20, 3), 2),
                                               "h": round(rng.gauss(50, 5), 2)},
                              anomaly=rng.random() < 0.05))  # fmt: skip
    return out


@pytest.mark.parametrize("batch", [1, 7, 100, 5000])
def test_applied_batches_equal_a_one_pass_computation(batch: int) -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=3600)
    readings = _stream(batch)
    store = DictPaneStore()
    for i in range(0, len(readings), batch):
        chunk = readings[i : i + batch]
        for device, partial in fold_batch(chunk, [0] * len(chunk), windows).items():
            apply_partial(store, device, partial, windows, partition=0)
    expected = _independent(readings, 60)
    for device in ("dev-0", "dev-1", "dev-2"):
        view = key_view(store, device, "tumbling", windows)
        assert view is not None
        got = {(device, w["start"]): w for w in view["windows"]}
        assert set(got) == {k for k in expected if k[0] == device}
        for key, window in got.items():
            assert window["count"] == expected[key]["count"]
            for name, (n, total, lo, hi) in expected[key]["metrics"].items():
                metric = window["metrics"][name]
                assert (metric["count"], metric["min"], metric["max"]) == (n, lo, hi)
                assert metric["mean"] == pytest.approx(total / n, rel=1e-12)
        assert view["totals"]["count"] == sum(1 for r in readings if r.reading.device_id == device)


def test_old_panes_expire_and_leave_the_totals() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=600)
    store = DictPaneStore()
    for minute in range(30):
        chunk = [scored("d", T0 + 60 * minute + s, {"t": 1.0}) for s in range(0, 60, 10)]
        apply_partial(store, "d", fold_batch(chunk, [0] * 6, windows)["d"], windows, 0)
    head = store.get_head("d")
    assert head is not None
    # watermark T0+1790: panes ending after T0+1190 are kept (minute 19 ends at T0+1200)
    assert head.panes == [T0 + 60 * m for m in range(19, 30)]
    assert len(store.panes) == 10  # deleted, not only forgotten; the newest is in the head
    assert head.open_pane == T0 + 60 * 29 and head.open_stats is not None
    assert head.totals.count == 66


def test_the_open_pane_lives_in_the_head_and_late_data_in_the_pane_table() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=3600)
    store = DictPaneStore()

    def apply(*readings: ScoredReading) -> KeyHead:
        partial = fold_batch(list(readings), [0] * len(readings), windows)["d"]
        head = apply_partial(store, "d", partial, windows, 0)
        assert head is not None
        return head

    head = apply(scored("d", T0 + 1, {"t": 1.0}), scored("d", T0 + 2, {"t": 2.0}))
    assert (head.open_pane, store.panes) == (T0, {})  # one table write: the head
    head = apply(scored("d", T0 + 61, {"t": 3.0}))
    assert head.open_pane == T0 + 60 and list(store.panes) == [pane_key("d", T0)]
    head = apply(scored("d", T0 + 3, {"t": 4.0}, late=True))  # late: into the pane table
    assert head.open_pane == T0 + 60
    closed = store.get_pane("d", T0)
    assert closed is not None and closed.count == 3 and closed.late == 1
    view = key_view(store, "d", "tumbling", windows)
    assert view is not None
    assert [(w["start"], w["count"]) for w in view["windows"]] == [(T0, 3), (T0 + 60, 1)]
    assert view["totals"]["count"] == 4


def test_data_behind_the_horizon_is_not_resurrected() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=600)
    store = DictPaneStore()
    apply_partial(store, "d", fold_batch([scored("d", T0 + 3600, {"t": 1.0})], [0], windows)["d"],
                  windows, 0)  # fmt: skip
    late = fold_batch([scored("d", T0, {"t": 1.0}, late=True)], [0], windows)["d"]
    head = apply_partial(store, "d", late, windows, 0)
    assert head is not None and head.panes == [T0 + 3600] and head.totals.count == 1


def test_dead_letters_for_unknown_keys_do_not_create_them() -> None:
    windows = AnalyticsWindows()
    store = DictPaneStore()
    partial = KeyPartial(origin=0)
    partial.pane(T0).dead_letters = 2
    assert apply_partial(store, "garbage", partial, windows, 0, create=False) is None
    assert store.heads == {}


def test_sweep_deletes_quiet_keys_of_the_given_partitions_only() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=600)
    store = DictPaneStore()
    for device, partition, ts in (("old", 0, T0), ("new", 0, T0 + 5000), ("other", 1, T0)):
        partial = fold_batch([scored(device, ts, {"t": 1.0})], [0], windows)[device]
        apply_partial(store, device, partial, windows, partition)
    gone = sweep_idle(store, store.iter_heads(), {0: T0 + 5000}, windows)
    assert gone == ["old"]
    assert set(store.heads) == {"new", "other"}
    assert all(not k.startswith("old@") for k in store.panes)


# --- folding a batch -----------------------------------------------------------------------------


def test_fold_counts_open_alerts_by_severity_in_their_pane() -> None:
    windows = AnalyticsWindows()
    batch = [
        scored("d", T0 + 10, {"t": 1.0}, anomaly=True, alerts=[alert("d", T0 + 10, "critical")]),
        scored("d", T0 + 70, {"t": 1.0}, alerts=[alert("d", T0 + 70, "critical", "resolved")]),
        scored("d", T0 + 80, {"t": 1.0}, alerts=[alert("d", T0 + 80, "warning")]),
    ]
    partial = fold_batch(batch, [0, 0, 0], windows)["d"]
    assert partial.panes[T0].alerts == [0, 0, 1]
    assert partial.panes[T0 + 60].alerts == [0, 1, 0]
    assert partial.watermark == T0 + 80
    assert (partial.site, partial.device_type) == ("plant-a", "pump")


def test_roll_up_sums_devices_into_sites_and_fleet() -> None:
    windows = AnalyticsWindows()
    batch = [
        scored("a", T0, {"t": 1.0}),
        scored("b", T0 + 1, {"t": 3.0}, site="plant-b"),
        scored("c", T0 + 2, {"t": 5.0}, site=None),
        scored("a", T0 + 61, {"t": 7.0}),
    ]
    devices = fold_batch(batch, [0, 1, 2, 0], windows)
    dead = KeyPartial(origin=0)
    dead.pane(T0).dead_letters = 3
    rolled = roll_up(devices, {"a": dead})
    assert set(rolled) == {"plant-a", "plant-b", UNASSIGNED_SITE, FLEET_KEY}
    assert rolled["plant-a"].panes[T0].count == 1 and rolled["plant-a"].panes[T0 + 60].count == 1
    fleet = rolled[FLEET_KEY]
    assert fleet.panes[T0].count == 3 and fleet.panes[T0].dead_letters == 3
    assert fleet.panes[T0].summary()["metrics"]["t"]["mean"] == 3.0
    assert fleet.watermark == T0 + 61
    assert rolled["plant-a"].panes[T0].dead_letters == 0  # a dead letter's site is unknown


def test_partials_travel_as_bytes() -> None:
    windows = AnalyticsWindows()
    partial = roll_up(fold_batch([scored("a", T0, {"t": 1.0})], [0], windows))["plant-a"]
    key, again = KeyPartial.from_bytes(partial.to_bytes("plant-a"))
    assert key == "plant-a" and again.site == "plant-a"
    assert again.panes == partial.panes and again.watermark == partial.watermark
    assert KeyPartial.from_bytes(partial.to_bytes(FLEET_KEY))[1].site is None


def test_roll_up_by_source_tags_each_partial_with_its_partition_and_offset() -> None:
    windows = AnalyticsWindows()
    batch = [
        scored("a", T0, {"t": 1.0}),
        scored("b", T0 + 1, {"t": 3.0}),
        scored("c", T0 + 2, {"t": 5.0}, site="plant-b"),
    ]
    partitions = [0, 1, 1, 0]  # batch message -> partition
    devices = fold_batch(batch, [0, 1, 2], windows)
    dead = KeyPartial(origin=3)
    dead.pane(T0).dead_letters = 1
    rolled = roll_up_by_source(devices, {"x": dead}, partitions, {0: 40, 1: 12})
    assert set(rolled) == {("plant-a", 0), ("plant-a", 1), ("plant-b", 1), ("*", 0), ("*", 1)}
    assert {key: (p.source, p.offset) for key, p in rolled.items()} == {
        ("plant-a", 0): (0, 40), ("plant-a", 1): (1, 12), ("plant-b", 1): (1, 12),
        ("*", 0): (0, 40), ("*", 1): (1, 12),
    }  # fmt: skip
    assert rolled[("*", 0)].panes[T0].count == 1 and rolled[("*", 0)].panes[T0].dead_letters == 1
    assert rolled[("*", 1)].panes[T0].count == 2
    key, again = KeyPartial.from_bytes(rolled[("plant-b", 1)].to_bytes("plant-b"))
    assert (key, again.source, again.offset) == ("plant-b", 1, 12)


def test_a_partial_applied_twice_counts_once_per_source() -> None:
    windows = AnalyticsWindows()

    def partial(source: int, offset: int, n: int) -> KeyPartial:
        out = KeyPartial(origin=0, source=source, offset=offset, watermark=T0 + 1)
        out.pane(T0).count = n
        return out

    store = DictPaneStore()
    assert apply_partial(store, "plant-a", partial(0, 10, 2), windows, 0) is not None
    assert apply_partial(store, "plant-a", partial(0, 10, 2), windows, 0) is None  # again
    assert apply_partial(store, "plant-a", partial(0, 7, 5), windows, 0) is None  # older
    apply_partial(store, "plant-a", partial(1, 3, 4), windows, 0)  # another source
    apply_partial(store, "plant-a", partial(0, 11, 1), windows, 0)
    head = store.get_head("plant-a")
    assert head is not None and head.totals.count == 2 + 4 + 1
    assert head.sources == {0: 11, 1: 3}
    merged = partial(0, 20, 1).merge(partial(0, 25, 1))
    assert (merged.source, merged.offset, merged.panes[T0].count) == (0, 25, 2)
    with pytest.raises(ValueError, match="sources 0 and 1"):
        partial(0, 1, 1).merge(partial(1, 1, 1))


def test_dead_letters_go_to_their_partition_event_time() -> None:
    windows = AnalyticsWindows()
    keys = [b"dev-0", b"dev-1", b"dev-1", None, b"dev-1", b"dev-1"]
    partitions = [0, 2, 2, 5, 2, 2]
    rejections = [
        Rejected(4, "InvalidJson", "bad"),
        Rejected(5, "MissingField", "bad", 0),
        Rejected(3, "InvalidJson", "bad"),  # partition 5: no event time known
    ]
    partials = fold_dead_letters(rejections, keys, partitions, {2: T0 + 61.0}, windows)
    assert list(partials) == ["dev-1"]
    assert partials["dev-1"].origin == 4
    assert partials["dev-1"].panes[T0 + 60].dead_letters == 2


# --- origins: the facts the pipeline hands over ------------------------------------------------


def _reading(device: str, ts: float, seq: int) -> dict[str, Any]:
    return {"device_id": device, "ts": ts, "seq": seq, "metrics": {"t": 20.0 + seq % 3}}


def test_batch_origins_follow_the_real_pipeline() -> None:
    pipeline = ReadingPipeline(Scorer(), clock=lambda: T0 + 100.0)

    class Store:
        def __init__(self) -> None:
            self.saved: dict[str, int] = {}

        def load(self, device_id: str, origin: int) -> None:
            return None

        def save(self, device_id: str, state: Any, origin: int) -> None:
            self.saved[device_id] = origin

    def message(key: bytes | None, value: Any, partition: int) -> Inbound:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return Inbound(key, raw, "sensor-readings", partition, 0)

    batch = [
        message(b"dev-a", _reading("dev-a", T0, 1), 0),
        message(b"gw-1", {"readings": [_reading("dev-b", T0, 1), _reading("dev-c", T0, 1)]}, 1),
        message(b"dev-a", b"{not json", 0),
        message(b"dev-d", _reading("dev-d", T0, 1), 2),
        message(b"gw-1", {"readings": [_reading("dev-c", T0 + 1, 2), {"bad": 1}]}, 1),
        message(b"gw-1", {"readings": [_reading("dev-b", T0 + 1, 2)]}, 1),
        message(b"dev-a", _reading("dev-a", T0 + 1, 2), 0),
    ]
    store = Store()
    result: BatchResult = pipeline.process(batch, store)
    origins = result.origins
    assert len(origins) == len(result.scored) == 7
    assert result.dead_letters == 2
    for outcome, origin in zip(result.scored, origins, strict=True):
        device = outcome.reading.device_id
        assert batch[origin].partition == batch[store.saved[device]].partition, device
    windows = AnalyticsWindows()
    devices = fold_batch(result.scored, origins, windows)
    assert {d: batch[p.origin].partition for d, p in devices.items()} == {
        "dev-a": 0, "dev-b": 1, "dev-c": 1, "dev-d": 2
    }  # fmt: skip
    keys, partitions = [m.key for m in batch], [m.partition for m in batch]
    dead = fold_dead_letters(result.rejections, keys, partitions, {0: T0, 1: T0}, windows)
    assert {k: (p.origin, p.panes[T0].dead_letters) for k, p in dead.items()} == {
        "dev-a": (2, 1), "gw-1": (4, 1)
    }  # fmt: skip


def test_fold_batch_refuses_origins_that_do_not_match_the_readings() -> None:
    result = BatchResult(scored=[scored("a", T0, {"t": 1.0})])  # no origin for its reading
    with pytest.raises(ValueError, match="shorter"):
        fold_batch(result.scored, result.origins, AnalyticsWindows())


def test_key_view_lists_newest_windows_and_refuses_bad_kinds() -> None:
    windows = AnalyticsWindows(60, 300, 60, retention_s=3600)
    store = DictPaneStore()
    readings = [scored("d", T0 + s, {"t": float(s)}) for s in range(0, 600, 5)]
    apply_partial(store, "d", fold_batch(readings, [0] * len(readings), windows)["d"], windows, 3)
    view = key_view(store, "d", "tumbling", windows, last=2)
    assert view is not None
    assert [w["start"] for w in view["windows"]] == [T0 + 480, T0 + 540]
    assert view["windows"][-1]["open"] is True and view["windows"][0]["open"] is False
    assert view["window"] == {"kind": "tumbling", "size_s": 60, "hop_s": 60, "retention_s": 3600}
    assert view["totals"]["count"] == 120
    hopping = key_view(store, "d", "hopping", windows)
    assert hopping is not None and max(w["count"] for w in hopping["windows"]) == 60
    assert key_view(store, "nobody", "tumbling", windows) is None
    with pytest.raises(ValueError, match="tumbling, hopping"):
        key_view(store, "d", "weekly", windows)


def test_many_devices_fold_independently() -> None:
    windows = AnalyticsWindows()
    readings = _stream(11, devices=5, per_device=50)
    partials = fold_batch(readings, list(range(len(readings))), windows)
    counts: dict[str, int] = defaultdict(int)
    for r in readings:
        counts[r.reading.device_id] += 1
    assert {d: sum(s.count for s in p.panes.values()) for d, p in partials.items()} == counts
    # a device's origin is the index of its first reading in the batch
    assert partials["dev-0"].origin == 0 and partials["dev-4"].origin == 4
