"""`agents.publish.Publisher`: order, partitions from the producer's partitioner (memoised),
and the batch awaited as a whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP

from edgeml.agents.publish import Publisher
from edgeml.app.settings import Settings
from edgeml.models.pipeline import Outbound
from edgeml.topics.declare import declare_topics


class FakeProducer:
    """Records every send; `key_partition` hashes like a partitioner would and counts calls.
    Each send returns a future the test settles (`settle`)."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.sent: list[tuple[str, bytes | None, bytes, int | None, Any]] = []
        self.hashed: list[tuple[str, bytes]] = []
        self.futures: list[asyncio.Future[None]] = []
        self.no_metadata: set[str] = set()
        self._sent = asyncio.Event()

    async def wait_sends(self, n: int) -> None:
        """Until `n` sends were made in all."""
        while len(self.sent) < n:
            self._sent.clear()
            await self._sent.wait()

    def key_partition(self, topic: str, key: bytes) -> TP:
        self.hashed.append((topic, key))
        if topic in self.no_metadata:
            raise TypeError("'NoneType' object is not iterable")  # aiokafka, before metadata
        return TP(topic, sum(key) % self.partitions)

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None, *args: Any
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, partition, args[-1]))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self._sent.set()
        return future

    def settle(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)


def _publisher(settings_factory: Callable[..., Settings]) -> tuple[Publisher, FakeProducer, Any]:
    settings = settings_factory()
    app = faust.App(settings.app_id, broker="kafka://localhost:1", autodiscover=False)
    topics = declare_topics(app, settings.topic_layout())
    producer = FakeProducer()
    app.producer = producer  # type: ignore[assignment]
    return Publisher(app, topics), producer, (app, topics)


async def test_records_go_out_in_order_with_the_partitioners_partition(
    settings_factory: Callable[..., Settings],
) -> None:
    publisher, producer, (_, topics) = _publisher(settings_factory)
    headers = [("error.class", b"ParseError")]
    records = [
        Outbound("predictions", b"dev-1", b"p1"),
        Outbound("alerts", b"dev-1", b"a1"),
        Outbound("predictions", b"dev-2", b"p2"),
        Outbound("dlq", None, b"bad", headers),
        Outbound("predictions", b"dev-1", b"p3"),
    ]
    task = asyncio.ensure_future(publisher.publish(records))
    await producer.wait_sends(len(records))
    await asyncio.sleep(0)
    assert not task.done()  # not returned before every send is acknowledged
    producer.settle()
    await task
    predictions = topics.predictions.get_topic_name()
    alerts = topics.alerts.get_topic_name()
    dlq = topics.dlq.get_topic_name()
    p1, p2 = sum(b"dev-1") % 4, sum(b"dev-2") % 4
    assert producer.sent == [
        (predictions, b"dev-1", b"p1", p1, None),
        (alerts, b"dev-1", b"a1", p1, None),
        (predictions, b"dev-2", b"p2", p2, None),
        (dlq, None, b"bad", None, headers),  # no key: the producer picks, as before
        (predictions, b"dev-1", b"p3", p1, None),
    ]
    # hashed once per (topic, key), not once per record
    assert producer.hashed == [(predictions, b"dev-1"), (alerts, b"dev-1"), (predictions, b"dev-2")]


async def test_a_failed_send_fails_the_batch(settings_factory: Callable[..., Settings]) -> None:
    publisher, producer, _ = _publisher(settings_factory)
    task = asyncio.ensure_future(
        publisher.publish(
            [Outbound("predictions", b"d", b"1"), Outbound("predictions", b"d", b"2")]
        )
    )
    await producer.wait_sends(2)
    producer.futures[0].set_result(None)
    producer.futures[1].set_exception(RuntimeError("broker said no"))
    try:
        await task
    except RuntimeError as exc:
        assert "broker said no" in str(exc)
    else:
        raise AssertionError("publish returned although a send failed")


async def _publish_settled(
    publisher: Publisher, producer: FakeProducer, *records: Outbound
) -> None:
    """`publish(records)` with every send acknowledged as soon as it is made."""
    task = asyncio.ensure_future(publisher.publish(records))
    while not task.done():
        producer.settle()
        await asyncio.sleep(0)
    await task


async def test_a_topic_without_metadata_is_sent_unpartitioned_and_asked_again(
    settings_factory: Callable[..., Settings],
) -> None:
    publisher, producer, (_, topics) = _publisher(settings_factory)
    predictions = topics.predictions.get_topic_name()
    producer.no_metadata.add(predictions)
    record = Outbound("predictions", b"d", b"v")
    await _publish_settled(publisher, producer, record)
    await _publish_settled(publisher, producer, record)
    assert [sent[3] for sent in producer.sent] == [None, None]
    assert producer.hashed == [(predictions, b"d")] * 2  # a failure is not remembered
    producer.no_metadata.clear()
    await _publish_settled(publisher, producer, record)
    assert producer.sent[-1][3] == sum(b"d") % 4


async def test_a_rebalance_forgets_the_partitions(
    settings_factory: Callable[..., Settings],
) -> None:
    publisher, producer, (app, topics) = _publisher(settings_factory)
    predictions = topics.predictions.get_topic_name()
    record = Outbound("predictions", b"d", b"v")
    await _publish_settled(publisher, producer, record)
    producer.partitions = 8  # the topic was given more partitions
    await _publish_settled(publisher, producer, record)
    assert [sent[3] for sent in producer.sent] == [sum(b"d") % 4] * 2  # memoised
    await app.on_partitions_assigned.send(set())
    await _publish_settled(publisher, producer, record)
    assert producer.sent[-1][3] == sum(b"d") % 8
    assert producer.hashed == [(predictions, b"d")] * 2


async def test_nothing_to_publish_sends_nothing(settings_factory: Callable[..., Settings]) -> None:
    publisher, producer, _ = _publisher(settings_factory)
    await publisher.publish([])
    assert producer.sent == []
