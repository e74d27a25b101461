"""Message planning (batching, pacing, interleaving) and the send loop, with a fake producer."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest

from edgeml.sim.generator import SimConfig, simulate
from edgeml.sim.malformed import MALFORMED_KINDS, malformed
from edgeml.sim.sender import (
    as_fast_as_possible,
    event_time_pace,
    fixed_rate,
    plan_messages,
    send_messages,
)
from edgeml.topics.records import MaintenanceEvent, SensorReading

CONFIG = SimConfig(devices=4, count=1500, seed=11, incident_every=200.0)


def _reading(device: str, seq: int, ts: float) -> SensorReading:
    return SensorReading(device_id=device, ts=ts, seq=seq, metrics={"x": 1.0})


def test_single_readings_in_order_with_malformed_spread() -> None:
    sim = simulate(CONFIG)
    bad = list(malformed(12, np.random.default_rng(0), device_ids=["dev-0001"]))
    messages = list(plan_messages(sim.events(), malformed=bad, total_readings=sim.readings_count))
    kinds = Counter(m.kind for m in messages)
    assert kinds["readings"] == sim.readings_count
    assert kinds["malformed"] == 12
    assert kinds["maintenance"] == len(sim.maintenance)
    positions = [i for i, m in enumerate(messages) if m.kind == "malformed"]
    gaps = np.diff(positions)
    assert gaps.min() > 0.5 * len(messages) / 12  # spread, not bunched
    assert {m.malformed_kind for m in messages if m.kind == "malformed"} == set(MALFORMED_KINDS)
    first = orjson.loads(messages[0].encode(123.0))
    assert first["sent_at"] == 123.0 and "readings" not in first


def test_batches_are_per_device_envelopes() -> None:
    sim = simulate(CONFIG)
    messages = list(plan_messages(sim.events(), batch=7))
    seen: dict[str, list[int]] = {}
    for message in messages:
        if message.kind != "readings":
            continue
        body = orjson.loads(message.encode(5.0))
        readings = body["readings"]
        assert 1 <= len(readings) <= 7
        assert {r["device_id"] for r in readings} == {message.key.decode()}  # type: ignore[union-attr]
        assert all(r["sent_at"] == 5.0 for r in readings)
        seen.setdefault(message.key.decode(), []).extend(r["seq"] for r in readings)  # type: ignore[union-attr]
    assert all(seqs == list(range(CONFIG.count)) for seqs in seen.values())


def test_maintenance_event_flushes_its_device_first() -> None:
    events: list[SensorReading | MaintenanceEvent] = [
        _reading("a", 0, 1.0),
        _reading("b", 0, 1.1),
        MaintenanceEvent("a", 1.5, "failure"),
        _reading("a", 1, 2.0),
    ]
    messages = list(plan_messages(events, batch=5))
    assert [(m.kind, m.key) for m in messages] == [
        ("readings", b"a"),
        ("maintenance", b"a"),
        ("readings", b"b"),
        ("readings", b"a"),
    ]


def test_paces() -> None:
    assert as_fast_as_possible(5, 1.0) is None
    assert fixed_rate(4.0)(8, 0.0) == 2.0
    assert event_time_pace(2.0, 100.0)(0, 110.0) == 5.0
    with pytest.raises(ValueError):
        fixed_rate(0.0)
    with pytest.raises(ValueError):
        list(plan_messages([], batch=0))


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent.append((topic, value, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_send_messages_paces_and_stamps_scheduled_time() -> None:
    now = [1000.0]
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        now[0] += delay

    events = [_reading(f"d{i % 2}", i // 2, 50.0 + i) for i in range(6)]
    producer = FakeProducer()
    stats = await send_messages(
        producer,
        plan_messages(events, pace=fixed_rate(2.0)),
        topic_name=lambda n: f"p-{n}",
        clock=lambda: now[0],
        sleep=fake_sleep,
    )
    assert stats.readings == 6 and stats.messages == 6
    assert stats.readings_per_device == {"d0": 3, "d1": 3}
    sent_at = [orjson.loads(v)["sent_at"] for _, v, _ in producer.sent]  # type: ignore[arg-type]
    assert sent_at == [1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.5]
    assert {t for t, _, _ in producer.sent} == {"p-sensor-readings"}
    assert sum(sleeps) == pytest.approx(2.5)
