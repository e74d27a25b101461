"""`agents.writeback`: table writes held back until Faust's offset commit, in the right partition,
and never flushed before the outputs of the batch that made them are acked.

A real Faust app with a memory store; the producer's `send_soon` records the changelog
messages a table write sends (topic, partition, key, value) instead of needing a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
import orjson
import pytest
from faust.types import Message

from edgeml.agents.writeback import CommitFlusher, KillAfterFlush, WriteBackTable, in_partition_of
from edgeml.app.factory import build_worker, create_app
from edgeml.app.settings import Settings
from edgeml.models.scoring import DeviceState


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
    assert len(flusher.tables) == 6  # device state, the four analytics tables, site partials
    sent = changelog(app)
    states = flusher.tables[0]
    assert isinstance(states, WriteBackTable)
    states.put(b"dev-a", DeviceState("dev-a", threshold_bins=8), event_in(app, 1))
    assert len(states) == 1
    app.sensors.on_commit_initiated(app.consumer)  # what Consumer.force_commit calls first
    assert len(states) == 0 and flusher.flushes == 1 and flusher.written == 1
    assert [(p, k) for p, k, _ in sent] == [(1, b"dev-a")]


async def test_a_held_batch_is_flushed_only_after_its_release(app: faust.App) -> None:
    sent = changelog(app)
    counts = counter_table(app)
    stage = counts.stage
    counts.put(b"dev-a", [1], event_in(app, 0))  # batch 1: staged, held, released
    stage.hold()
    stage.release()
    stage.begin()  # batch 2 reads dev-a, changes it in place and awaits its outputs
    value = counts.get(b"dev-a", event_in(app, 0))
    assert value == [1]
    value.append(2)
    counts.put(b"dev-a", value, event_in(app, 0))
    counts.put(b"dev-b", [9], event_in(app, 1))
    stage.hold()
    assert counts.get(b"dev-a") is value  # reads see the newest value
    assert counts.flush() == 1  # a commit while batch 2 is in flight
    assert sent == [(0, b"dev-a", b"1")]  # batch 1's value, not batch 2's change
    assert len(counts) == 2 and counts.flush() == 0
    stage.release()
    assert counts.flush() == 2
    assert sorted(sent[1:]) == [(0, b"dev-a", b"1,2"), (1, b"dev-b", b"9")]
    assert counts.get(b"dev-a", event_in(app, 0)) == [1, 2] and len(counts) == 0


async def test_a_held_key_stays_held_whoever_writes_it(app: faust.App) -> None:
    """A writer that never holds (maintenance labels) is flushed by the next commit, except
    for a key an in-flight batch holds: that waits for the batch."""
    sent = changelog(app)
    counts = counter_table(app)
    stage = counts.stage
    stage.begin()
    counts.put(b"dev-a", [1], event_in(app, 0))
    stage.hold()  # the scoring batch awaits its outputs
    stage.begin()  # a maintenance event
    held = counts.get(b"dev-a", event_in(app, 0))
    assert held == [1]
    counts.put(b"dev-a", [*held, 5], event_in(app, 0))
    counts.put(b"dev-c", [3], event_in(app, 2))
    assert counts.flush() == 1 and sent == [(2, b"dev-c", b"3")]
    stage.begin()  # the next writer: dev-a joins the held batch
    assert counts.flush() == 0
    stage.release()
    assert counts.flush() == 1 and sent[-1] == (0, b"dev-a", b"1,5")


async def test_writes_outside_any_batch_flush_at_the_next_commit(app: faust.App) -> None:
    sent = changelog(app)
    counts = counter_table(app)
    counts.stage.begin()
    counts.put(b"dev-a", [4], event_in(app, 3))
    assert counts.flush() == 1 and sent == [(3, b"dev-a", b"4")]


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[Any] = []

    async def _commit(self, offsets: Any) -> bool:
        self.committed.append(offsets)
        return True


async def test_the_fault_hook_kills_between_the_nth_flush_and_its_offset_commit(
    app: faust.App,
) -> None:
    changelog(app)
    counts = counter_table(app)
    kills: list[int] = []
    hook = KillAfterFlush(counts.stage, 2, kill=lambda: kills.append(len(consumer.committed)))
    consumer = FakeConsumer()

    async def commit(offsets: int) -> None:  # what Consumer.force_commit does, in order
        hook.on_commit_initiated(consumer)
        counts.flush()
        await consumer._commit(offsets)

    await commit(1)  # nothing written: not a flush that counts
    counts.put(b"dev-a", [1], event_in(app, 0))
    await commit(2)
    assert kills == []
    await commit(3)  # again nothing written
    counts.put(b"dev-a", [2], event_in(app, 0))
    await commit(4)
    assert kills == [3]  # before the 4th offset commit reached the consumer
    with pytest.raises(ValueError, match="after must be >= 1"):
        KillAfterFlush(counts.stage, 0)


async def test_a_commit_during_publish_flushes_nothing_of_that_batch(
    settings_factory: Callable[..., Settings],
) -> None:
    """The real `score_readings`: Faust's commit runs while the agent awaits its outputs."""
    parts = build_worker(settings_factory(batch_within_s=0.01, batch_max=4))
    app = parts.app
    app.finalize()
    app.flow_control.resume()
    sent: list[str] = []  # topics of the changelog messages and site partials sent
    app.producer.send_soon = lambda fut: sent.append(fut.message.channel.get_topic_name())  # type: ignore[method-assign]
    acks: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    publishing = asyncio.Event()

    async def send(topic: str, key: bytes, value: bytes, *args: Any) -> asyncio.Future[None]:
        publishing.set()
        return acks

    app.producer.send = send  # type: ignore[method-assign,assignment]
    reading = {"device_id": "dev-a", "ts": 1_767_225_600.0, "seq": 1, "metrics": {"t": 1.0}}
    async with app.agents["score_readings"].test_context() as agent:
        put = asyncio.ensure_future(agent.put(orjson.dumps(reading), key=b"dev-a"))
        await asyncio.wait_for(publishing.wait(), 10)
        app.sensors.on_commit_initiated(app.consumer)  # the commit, mid-publish
        assert sent == [] and len(parts.stores.partials) == 2  # "unassigned" and the fleet
        acks.set_result(None)
        await asyncio.wait_for(put, 10)
    app.sensors.on_commit_initiated(app.consumer)
    names = {name.removeprefix(app.conf.id + "-") for name in sent}
    assert {"analytics-device-heads-changelog", "analytics-site-partials"} <= names, names
    assert any(name.endswith("-changelog") and "analytics" not in name for name in names), names


async def test_the_before_sends_hook_kills_right_after_the_nth_flush_wrote(
    app: faust.App,
) -> None:
    sent = changelog(app)
    counts = counter_table(app)
    flusher = CommitFlusher([counts])
    kills: list[int] = []
    hook = KillAfterFlush(counts.stage, 2, kill=lambda: kills.append(len(sent)), flusher=flusher)
    hook.on_commit_initiated(None)  # nothing written: not a flush that counts
    counts.put(b"dev-a", [1], event_in(app, 0))
    hook.on_commit_initiated(None)
    flusher.on_commit_initiated(None)  # the flusher's own turn, after the hook's: writes nothing
    counts.put(b"dev-a", [2], event_in(app, 0))
    assert kills == []
    hook.on_commit_initiated(None)
    # killed once the 2nd writing flush put its messages in the buffer (here: recorded)
    assert kills == [2] and flusher.flushes == 4


async def test_a_commit_flush_records_its_site_partials_in_the_outbox_and_resends_them(
    settings_factory: Callable[..., Settings],
) -> None:
    """The partials a flush sends are in the outbox table of their source partition, written
    before the sends; `resend` (after each recovery) sends exactly those again."""
    parts = build_worker(settings_factory(batch_within_s=0.01, batch_max=4))
    app = parts.app
    app.finalize()
    app.flow_control.resume()
    sent: list[tuple[str, bytes]] = []  # (topic, value) of the site partials sent

    def send_soon(fut: Any) -> None:
        name = fut.message.channel.get_topic_name()
        if name.endswith("analytics-site-partials"):
            sent.append((name, fut.message.value))

    app.producer.send_soon = send_soon  # type: ignore[method-assign]
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acked.set_result(None)

    async def send(topic: str, key: bytes, value: bytes, *args: Any) -> asyncio.Future[None]:
        return acked

    app.producer.send = send  # type: ignore[method-assign,assignment]
    reading = {"device_id": "dev-a", "ts": 1_767_225_600.0, "seq": 1, "metrics": {"t": 1.0}}
    async with app.agents["score_readings"].test_context() as agent:
        await asyncio.wait_for(agent.put(orjson.dumps(reading), key=b"dev-a"), 10)
    partials = parts.stores.partials
    assert partials.resend() == 0  # nothing flushed yet: the outbox is empty
    app.sensors.on_commit_initiated(app.consumer)
    flushed = [value for _, value in sent]
    assert len(flushed) == 2  # the device's site ("unassigned") and the fleet
    outbox = dict(partials.outbox.items())
    assert len(outbox) == 1
    (lines,) = outbox.values()
    assert sorted(lines.split(b"\n")) == sorted(flushed)
    assert all(orjson.loads(v)["src"][0] == int(next(iter(outbox))) for v in flushed)
    assert partials.resend() == 2 and sorted(v for _, v in sent[2:]) == sorted(flushed)
    assert partials.resent == 2
