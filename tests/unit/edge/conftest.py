"""Test doubles of the edge tests: a fake of the aiokafka producer the forwarder drives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class FakeProducer:
    """Records sends; `fail_from` makes the n-th and later acks fail, `down` fails start()."""

    def __init__(self, *, down: bool = False, fail_from: int | None = None) -> None:
        self.down = down
        self.fail_from = fail_from
        self.sent: list[tuple[str, bytes, bytes, dict[str, bytes]]] = []
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        if self.down:
            raise ConnectionRefusedError("broker down")

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> Awaitable[Any]:  # fmt: skip
        assert value is not None and key is not None
        n = len(self.sent)
        self.sent.append((topic, key, value, dict(headers or [])))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_from is not None and n >= self.fail_from:
            future.set_exception(TimeoutError("no ack"))
        else:
            future.set_result(n)
        return future
