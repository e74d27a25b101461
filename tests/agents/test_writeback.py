"""`agents.writeback`: table writes held back until Faust's offset commit, in the right partition.

A real Faust app with a memory store; the producer's `send_soon` records the changelog
messages a table write sends (topic, partition, key, value) instead of needing a broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
import pytest
from faust.types import Message

from agents.writeback import CommitFlusher, WriteBackTable, in_partition_of
from app.factory import create_app
from app.settings import Settings
from models.scoring import DeviceState


@pytest.fixture
async def app() -> AsyncIterator[faust.App]:
    app = faust.App("writeback-test", store="memory://", autodiscover=False)
    app.finalize()
    yield app


def event_in(app: faust.App, partition: int, key: bytes = b"k") -> faust.EventT:
    message = Message("readings", partition, 0, 0.0, 0, [], key, b"", None)
    return faust.Event(app, key, b"", [], message)


def changelog(app: faust.App) -> list[tuple[int, bytes, bytes | None]]:
    sent: list[tuple[int, bytes, bytes | None]] = []

    def send_soon(fut: Any) -> None:
        message = fut.message
        sent.append((message.partition, message.key, message.value))

    app.producer.send_soon = send_soon  # type: ignore[method-assign]
    return sent


def counter_table(app: faust.App) -> WriteBackTable[list[int]]:
    table = app.Table("counts", default=None, key_type=bytes, value_type=bytes, partitions=4)
    return WriteBackTable(
        table, lambda v: ",".join(map(str, v)).encode(), lambda b: [int(x) for x in b.split(b",")]
    )


async def test_writes_are_held_back_then_sent_to_the_keys_partition(app: faust.App) -> None:
    sent = changelog(app)
    counts = counter_table(app)
    value = [1]
    counts.put(b"dev-a", value, event_in(app, 2))
    value.append(2)  # changed in place after the put: the flush writes what it holds then
    counts.put(b"dev-b", [7], event_in(app, 3))
    assert counts.get(b"dev-a") is value and len(counts) == 2
    assert sent == [] and not counts.table
    assert counts.flush() == 2
    assert sorted(sent) == [(2, b"dev-a", b"1,2"), (3, b"dev-b", b"7")]
    assert counts.table[b"dev-a"] == b"1,2" and len(counts) == 0
    assert counts.get(b"dev-a", event_in(app, 2)) is value  # decoded once, bytes unchanged
    counts.delete(b"dev-b", event_in(app, 3))
    assert counts.get(b"dev-b") is None and counts.table[b"dev-b"] == b"7"
    assert dict(counts.items()) == {b"dev-a": [1, 2]}
    counts.flush()
    assert sent[-1] == (3, b"dev-b", None) and b"dev-b" not in counts.table
    assert counts.flush() == 0


async def test_the_table_stays_the_source_of_truth(app: faust.App) -> None:
    changelog(app)
    counts = counter_table(app)
    counts.put(b"dev-a", [1], event_in(app, 0))
    counts.flush()
    cached = counts.get(b"dev-a", event_in(app, 0))
    event = event_in(app, 0)  # Faust keeps only a weak reference to the current event
    in_partition_of(event)
    counts.table[b"dev-a"] = b"5,6"  # as a recovered or rebalanced partition would hold
    fresh = counts.get(b"dev-a", event_in(app, 0))
    assert fresh == [5, 6] and fresh is not cached


async def test_values_need_not_be_kept_decoded(app: faust.App) -> None:
    changelog(app)
    table = app.Table("panes", default=None, key_type=bytes, value_type=bytes, partitions=4)
    panes = WriteBackTable(table, bytes, list, keep_decoded=False)
    event = event_in(app, 0)
    panes.put(b"p", [1, 2], event)
    panes.flush()
    first = panes.get(b"p", event)
    assert first == [1, 2] and panes.get(b"p", event) is not first  # decoded on every read


async def test_in_partition_of_leaves_the_streams_own_event_alone(app: faust.App) -> None:
    """`take_events`' drainer reads `Stream.current_event`; only Faust's task-local
    `current_event()` (what tables and stores read) may change."""
    stream = app.stream([])
    mine = event_in(app, 1)
    stream.current_event = mine
    other = event_in(app, 3)
    in_partition_of(other)
    assert faust.current_event() is other
    assert stream.current_event is mine


async def test_the_worker_flushes_every_held_write_when_faust_commits(
    settings_factory: Callable[..., Settings],
) -> None:
    app = create_app(settings_factory())
    app.finalize()
    flushers = [s for s in app.sensors if isinstance(s, CommitFlusher)]
    assert len(flushers) == 1
    flusher = flushers[0]
    assert len(flusher.tables) == 5  # device state and the four analytics tables
    sent = changelog(app)
    states = flusher.tables[0]
    states.put(b"dev-a", DeviceState("dev-a", threshold_bins=8), event_in(app, 1))
    assert len(states) == 1
    app.sensors.on_commit_initiated(app.consumer)  # what Consumer.force_commit calls first
    assert len(states) == 0 and flusher.flushes == 1 and flusher.written == 1
    assert [(p, k) for p, k, _ in sent] == [(1, b"dev-a")]
