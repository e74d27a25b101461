"""10,000 keyed records through the project's producer and consumer settings, all back in order."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

RECORDS = 10_000
DEVICES = 97
PARTITIONS = 4


async def test_every_record_comes_back_once_in_partition_order(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    group_id: str,
) -> None:
    settings = settings_factory()
    topic = topic_factory("roundtrip", partitions=PARTITIONS)
    sent: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)  # partition -> records

    producer = AIOKafkaProducer(**settings.producer_config())
    await producer.start()
    try:
        pending = []
        for seq in range(RECORDS):
            key = f"device-{seq % DEVICES:03d}".encode()
            value = orjson.dumps({"device_id": key.decode(), "seq": seq})
            pending.append((key, value, await producer.send(topic, value=value, key=key)))
        for key, value, delivery in pending:
            meta = await delivery
            sent[meta.partition].append((meta.offset, key, value))
    finally:
        await producer.stop()

    assert sum(map(len, sent.values())) == RECORDS
    assert set(sent) == set(range(PARTITIONS)), "97 keys should spread over all 4 partitions"
    for records in sent.values():  # sends to one partition got increasing offsets, in send order
        offsets = [offset for offset, _, _ in records]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)

    received: dict[int, list[tuple[int, bytes, bytes]]] = defaultdict(list)
    consumer = AIOKafkaConsumer(topic, **settings.consumer_config(group_id))
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, received.values())) < RECORDS and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for tp, messages in batches.items():
                received[tp.partition] += [(m.offset, m.key, m.value) for m in messages]
    finally:
        await consumer.stop()

    assert sum(map(len, received.values())) == RECORDS
    for partition, records in sent.items():
        assert received[partition] == records, f"partition {partition} differs"
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, records in received.items():
        for _, key, _ in records:
            partitions_of_key[key].add(partition)
    assert len(partitions_of_key) == DEVICES
    assert all(len(parts) == 1 for parts in partitions_of_key.values()), "a key moved partition"
    for records in received.values():  # per key, sequence numbers arrive increasing
        last_seq: dict[bytes, int] = {}
        for _, key, value in records:
            seq = orjson.loads(value)["seq"]
            assert seq > last_seq.get(key, -1)
            last_seq[key] = seq
