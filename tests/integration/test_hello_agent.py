"""The test-only hello agent in a real platform worker against the real broker.

The worker is `tests/agents/hello_agent.py`: the production app (`create_app`) plus the agent,
which the production worker itself no longer registers.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from edgeml.app.settings import Settings
from tests.agents import hello_agent

pytestmark = pytest.mark.integration


async def test_a_greeting_comes_back_upper_cased(
    settings_factory: Callable[..., Settings],
    topic_factory: Callable[..., str],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    group_id: str,
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    # Declared up front, as deployments do: a worker does not create its agents' source topics.
    greetings = topic_factory(hello_agent.GREETINGS, partitions=settings.topic_partitions)
    replies = topic_factory(hello_agent.REPLIES, partitions=settings.topic_partitions)
    assert (greetings, replies) == (settings.topic("hello-in"), settings.topic("hello-out"))
    worker_factory(settings, script=Path(hello_agent.__file__))

    consumer = AIOKafkaConsumer(replies, **settings.consumer_config(group_id))
    producer = AIOKafkaProducer(**settings.producer_config())
    await consumer.start()
    await producer.start()
    try:
        await producer.send_and_wait(greetings, key=b"sensor-1", value=b"world")
        reply = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await producer.stop()
        await consumer.stop()

    assert (reply.key, reply.value) == (b"sensor-1", b"HELLO WORLD")
    assert "event loop: uvloop.Loop" in (tmp_path / "worker-1.log").read_text()  # the default
