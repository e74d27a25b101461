"""The forwarder against a fake producer: order, mark-after-ack (prefix only), headers, backoff
while the broker is down; and the backoff schedule and byte-rate cap themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgeml.edge.backoff import Backoff, RateLimiter
from edgeml.edge.db import connect, transaction
from edgeml.edge.errors import SyncError
from edgeml.edge.metrics import EdgeMetrics
from edgeml.edge.outbox import Outbox, OutboxLimits, OutboxRecord
from edgeml.edge.sync import Forwarder

from .conftest import FakeProducer

TOPICS = {"readings": "t-readings", "predictions": "t-predictions", "alerts": "t-alerts"}


def _outbox(path: Path) -> Outbox:
    outbox = Outbox(connect(path), OutboxLimits(2**20))
    with transaction(outbox.conn):
        for n in range(6):
            for device in ("a", "b"):
                outbox.add(
                    OutboxRecord(
                        "predictions",
                        device,
                        n,
                        f"{device}:{n}",
                        device.encode(),
                        b'{"v":1}',
                        100.0 + n,
                    )
                )
        outbox.add(OutboxRecord("alerts", "a", 3, "a:3:open", b"a", b'{"a":1}', 103.0))
        outbox.persist()
    return outbox


def _forwarder(outbox: Outbox, producer: FakeProducer, **kwargs: Any) -> Forwarder:
    return Forwarder(outbox, lambda: producer, TOPICS, agent_id="agent-7",
                     metrics=EdgeMetrics(), **kwargs)  # fmt: skip


async def test_rows_go_in_outbox_order_with_their_ids_and_are_marked_sent(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "e.db")
    producer = FakeProducer()
    assert await _forwarder(outbox, producer).forward_once(producer) == 13

    per_device: dict[bytes, list[int]] = {}
    for topic, key, _, headers in producer.sent:
        if topic == "t-predictions":
            per_device.setdefault(key, []).append(int(headers["edgeml.seq"]))
    assert per_device == {b"a": list(range(6)), b"b": list(range(6))}
    topic, key, _, headers = producer.sent[-1]
    assert (topic, key) == ("t-alerts", b"a")
    assert headers["edgeml.uid"] == b"a:3:open"
    assert headers["edgeml.origin"] == b"edge" and headers["edgeml.agent_id"] == b"agent-7"
    assert headers["edgeml.event_ts"] == b"103.0"
    assert outbox.total_rows == 0 and outbox.count("sent:predictions") == 12


async def test_only_the_acknowledged_prefix_is_marked_and_the_rest_is_resent(
    tmp_path: Path,
) -> None:
    outbox = _outbox(tmp_path / "e.db")
    failing = FakeProducer(fail_from=4)
    with pytest.raises(SyncError, match="4 of 13 rows acknowledged"):
        await _forwarder(outbox, failing).forward_once(failing)
    assert outbox.total_rows == 9 and outbox.count("sent:predictions") == 4

    healthy = FakeProducer()
    assert await _forwarder(outbox, healthy).forward_once(healthy) == 9
    resent = [h["edgeml.uid"] for _, _, _, h in healthy.sent]
    assert resent[0] == b"a:2"  # the first unacknowledged row leads again: order kept
    assert outbox.total_rows == 0


async def test_a_down_broker_is_retried_with_growing_delays_until_it_answers(
    tmp_path: Path,
) -> None:
    outbox = _outbox(tmp_path / "e.db")
    producer = FakeProducer(down=True)
    forwarder = _forwarder(outbox, producer, backoff=Backoff(0.01, 0.04), random_unit=lambda: 1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop))
    while producer.starts < 4:  # noqa: ASYNC110 (polling the fake: nothing to wait on)
        await asyncio.sleep(0.005)
    assert outbox.total_rows == 13 and forwarder.metrics.sync_errors >= 3
    producer.down = False
    while outbox.total_rows:  # noqa: ASYNC110 (the mark happens inside the forwarder)
        await asyncio.sleep(0.005)
    assert forwarder.attempt == 0  # reset once connected
    stop.set()
    await task
    assert len(producer.sent) == 13


def test_backoff_is_exponential_capped_and_jittered_within_bounds() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, jitter=0.5)
    assert [backoff.ceiling(n) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.ceiling(10_000) == 30.0  # no overflow after a long outage
    for attempt in range(12):
        top = backoff.ceiling(attempt)
        assert backoff.delay(attempt, random=lambda: 0.0) == pytest.approx(top / 2)
        assert backoff.delay(attempt, random=lambda: 0.999) <= top
    with pytest.raises(ValueError):
        Backoff(initial_s=5, max_s=1)


def test_the_rate_limiter_holds_the_average_byte_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(1000.0, clock=lambda: now[0])
    waits = []
    for _ in range(5):  # 5 x 500 bytes with no time passing: the bucket holds 1000
        waits.append(limiter.wait_s(500))
    assert waits == [0.0, 0.0, pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.5)]
    assert RateLimiter(0).wait_s(10**9) == 0.0
