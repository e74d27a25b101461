"""The edge outbox: byte and age bounds, per-stream on-full policies, drop counters, in-flight
protection, and that every figure survives reopening the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeml.edge.db import connect, transaction
from edgeml.edge.outbox import (
    STREAMS,
    Outbox,
    OutboxLimits,
    OutboxRecord,
    StreamPolicy,
)


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _record(stream: str, n: int, size: int = 100, device: str = "dev-1") -> OutboxRecord:
    uid = f"{device}:{n}"
    value = b"x" * (size - len(uid) - len(device))
    return OutboxRecord(stream, device, n, uid, device.encode(), value, float(n))  # type: ignore[arg-type]


def _outbox(
    path: Path, max_bytes: int, clock: Clock | None = None, **policies: StreamPolicy
) -> Outbox:
    return Outbox(connect(path), OutboxLimits(max_bytes, policies), clock or Clock())


def _add(outbox: Outbox, *records: OutboxRecord) -> list[bool]:
    with transaction(outbox.conn):
        kept = [outbox.add(record) for record in records]
        outbox.persist()
    return kept


def _stored(conn: sqlite3.Connection, stream: str) -> list[int]:
    return [
        seq
        for (seq,) in conn.execute("SELECT seq FROM outbox WHERE stream = ? ORDER BY id", (stream,))
    ]


def test_drop_oldest_keeps_the_newest_within_the_byte_bound(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000)
    kept = _add(outbox, *[_record("predictions", n) for n in range(15)])

    assert all(kept)
    assert _stored(outbox.conn, "predictions") == list(range(5, 15))
    assert outbox.total_bytes == 1000
    assert outbox.drops() == {("predictions", "full_evicted"): 5}


def test_reject_new_keeps_the_oldest_and_counts_the_refused(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000, predictions=StreamPolicy("reject-new"))
    kept = _add(outbox, *[_record("predictions", n) for n in range(15)])

    assert kept == [True] * 10 + [False] * 5
    assert _stored(outbox.conn, "predictions") == list(range(10))
    assert outbox.drops() == {("predictions", "full_rejected"): 5}


def test_a_full_outbox_gives_up_readings_then_predictions_before_alerts(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000)
    _add(outbox, *[_record("readings", n) for n in range(3)])
    _add(outbox, *[_record("alerts", n) for n in range(3)])
    _add(outbox, *[_record("predictions", n) for n in range(4)])
    # full: a new alert takes the oldest reading first ...
    _add(outbox, _record("alerts", 3))
    assert _stored(outbox.conn, "readings") == [1, 2]
    # ... and a new prediction never takes an alert's room: readings, then its own oldest
    _add(outbox, *[_record("predictions", n) for n in range(4, 8)])
    assert _stored(outbox.conn, "readings") == []
    assert _stored(outbox.conn, "alerts") == [0, 1, 2, 3]
    assert _stored(outbox.conn, "predictions") == [2, 3, 4, 5, 6, 7]
    # alerts go last: once nothing below them is left
    _add(outbox, *[_record("alerts", n) for n in range(4, 11)])
    assert _stored(outbox.conn, "predictions") == []
    assert _stored(outbox.conn, "alerts") == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert outbox.drops() == {
        ("readings", "full_evicted"): 3,
        ("predictions", "full_evicted"): 8,
        ("alerts", "full_evicted"): 1,
    }


def test_a_refused_record_evicts_nothing(tmp_path: Path) -> None:
    # predictions reject-new, the room below them (readings) too small: nothing is evicted
    outbox = _outbox(tmp_path / "e.db", 1000, predictions=StreamPolicy("reject-new"))
    _add(outbox, _record("readings", 0, size=50))
    _add(outbox, *[_record("predictions", n, size=95) for n in range(10)])
    assert _add(outbox, _record("predictions", 10, size=100)) == [False]
    assert _stored(outbox.conn, "readings") == [0]
    assert outbox.drops() == {("predictions", "full_rejected"): 1}


def test_too_large_records_and_duplicate_ids_are_counted(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000)
    assert _add(outbox, _record("predictions", 0, size=1001)) == [False]
    assert _add(outbox, _record("predictions", 1), _record("predictions", 1)) == [True, False]
    assert outbox.drops() == {
        ("predictions", "too_large"): 1,
        ("predictions", "duplicate_id"): 1,
    }
    assert outbox.total_rows == 1


def test_rows_older_than_their_stream_max_age_expire(tmp_path: Path) -> None:
    clock = Clock()
    outbox = _outbox(
        tmp_path / "e.db", 10_000, clock,
        predictions=StreamPolicy(max_age_s=60), alerts=StreamPolicy(max_age_s=600),
    )  # fmt: skip
    _add(outbox, _record("predictions", 0), _record("alerts", 0))
    clock.now += 30
    _add(outbox, _record("predictions", 1))
    clock.now += 31  # prediction 0 is 61 s old, prediction 1 31 s, the alert 61 s
    with transaction(outbox.conn):
        assert outbox.expire() == 1
        outbox.persist()
    assert _stored(outbox.conn, "predictions") == [1]
    assert _stored(outbox.conn, "alerts") == [0]
    assert outbox.drops() == {("predictions", "expired"): 1}
    assert outbox.oldest_age_s("alerts") == pytest.approx(61)
    assert outbox.oldest_age_s("readings") is None


def test_rows_in_flight_are_neither_evicted_nor_expired(tmp_path: Path) -> None:
    clock = Clock()
    outbox = _outbox(tmp_path / "e.db", 1000, clock, predictions=StreamPolicy(max_age_s=10))
    _add(outbox, *[_record("predictions", n) for n in range(10)])
    in_flight = outbox.fetch(3)
    assert [row.seq for row in in_flight] == [0, 1, 2]
    _add(outbox, _record("predictions", 10))  # full: evicts 3, the oldest not in flight
    assert _stored(outbox.conn, "predictions") == [0, 1, 2, *range(4, 11)]
    clock.now += 11
    with transaction(outbox.conn):
        outbox.expire()
        outbox.mark_sent(in_flight)
        outbox.persist()
    assert _stored(outbox.conn, "predictions") == []
    assert outbox.count("sent:predictions") == 3
    assert outbox.drops() == {("predictions", "full_evicted"): 1, ("predictions", "expired"): 7}


def test_totals_and_counters_survive_reopening(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000)
    _add(outbox, *[_record("predictions", n) for n in range(12)], _record("alerts", 0))
    with transaction(outbox.conn):
        outbox.mark_sent(outbox.fetch(2))
        outbox.persist()
    outbox.conn.close()

    again = _outbox(tmp_path / "e.db", 1000)
    assert (again.rows, again.bytes) == (outbox.rows, outbox.bytes)
    assert again.counters == outbox.counters
    assert again.count("sent:predictions") == 2


def test_a_rolled_back_transaction_leaves_no_trace_after_reload(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db", 1000)
    _add(outbox, _record("predictions", 0))
    with pytest.raises(RuntimeError), transaction(outbox.conn):
        outbox.add(_record("predictions", 1))
        outbox.persist()
        raise RuntimeError("crash before COMMIT")
    outbox.reload()
    assert outbox.total_rows == 1
    assert outbox.count("added:predictions") == 1


_op = st.tuples(st.sampled_from(STREAMS), st.integers(min_value=20, max_value=400), st.booleans())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(_op, min_size=1, max_size=80),
    max_bytes=st.integers(min_value=300, max_value=3000),
    policies=st.tuples(*[st.sampled_from(["reject-new", "drop-oldest"])] * 3),
)
def test_property_bounded_alerts_last_and_every_record_accounted(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, int, bool]],
    max_bytes: int,
    policies: tuple[str, str, str],
) -> None:
    path = tmp_path_factory.mktemp("prop") / "e.db"
    outbox = _outbox(
        path,
        max_bytes,
        **{s: StreamPolicy(p) for s, p in zip(STREAMS, policies, strict=True)},  # type: ignore[arg-type]
    )
    sent: dict[str, int] = dict.fromkeys(STREAMS, 0)
    for n, (stream, size, send_some) in enumerate(ops):
        alerts_evicted = outbox.drops().get(("alerts", "full_evicted"), 0)
        _add(outbox, _record(stream, n, size=size, device=f"d{n % 3}"))
        if outbox.drops().get(("alerts", "full_evicted"), 0) > alerts_evicted:
            # an alert goes only once no reading or prediction is left
            assert outbox.rows["readings"] == outbox.rows["predictions"] == 0
        stored = outbox.conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM outbox").fetchone()[0]
        assert stored == outbox.total_bytes <= max_bytes
        if send_some:
            rows = outbox.fetch(2)
            with transaction(outbox.conn):
                outbox.mark_sent(rows)
                outbox.persist()
            for row in rows:
                sent[row.stream] += 1
    drops = outbox.drops()
    for stream in STREAMS:
        offered = outbox.count(f"offered:{stream}")
        refused = sum(
            drops.get((stream, r), 0) for r in ("full_rejected", "too_large", "duplicate_id")
        )
        assert offered == sum(1 for s, _, _ in ops if s == stream)
        assert outbox.count(f"added:{stream}") == offered - refused
        assert outbox.count(f"added:{stream}") == (
            outbox.rows[stream] + sent[stream] + drops.get((stream, "full_evicted"), 0)
        )
