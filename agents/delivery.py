"""A producer whose `flush` returns only once every buffered message was handed to the client.

The loss (issue #9's kill window, seen in 2 of 3 clean-clone CI runs: the fleet analytics
short by ~3 %, predictions exact). Faust writes a table key's changelog message, and our
site partials, with `send_soon`: into the producer's `ProducerBuffer`, which one background
task drains. Before an offset commit Faust awaits `producer.flush()`, and in 0.15.3
`ProducerBuffer.flush_atmost` returns as soon as *one* message takes longer than 0.1 s to be
handed over (`asyncio.wait_for(message_sent.wait(), timeout=0.1)`), with the rest still in
the buffer; the client flush that follows waits only for what it was given, and the offsets
are committed. A busy event loop (a scoring batch) or a metadata fetch for a topic's first
send easily takes 0.1 s, and the commit flush of the write-back tables puts every state,
analytics and partial write into the buffer at once. A crash then loses what was left: the
RocksDB store already holds the state (it is written locally at the flush), so its readings are
recognised as applied on restart while their site partials never left; on a fresh disk the state
changelog itself can be short.

`DeliveringBuffer.flush` waits until the buffer is empty *and* its drain task is not in the
middle of handing one over, so a commit's offsets never go ahead of what it flushed. A buffer
that makes no progress for `stall_s` raises, which fails that commit (Faust then crashes the
worker and a restart recovers), rather than committing past undelivered writes. Installed with
Faust's public `App.transport` setter (`install`): the aiokafka transport and producer,
subclassed only to make that buffer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

__all__ = ["DeliveringBuffer", "DeliveringProducer", "DeliveringTransport", "install"]

log = logging.getLogger(__name__)


class DeliveringBuffer(ProducerBuffer):
    """`ProducerBuffer` whose `flush` drains it completely (module docstring)."""

    stall_s: float = 300.0  # no message handed over for this long: the commit fails
    # Faust's conductor stops feeding the streams while more than `max_messages` are buffered
    # (`wait_until_ebb`). Its 100 is less than one commit flush (about 220-290 changelog
    # messages and partials for 100 devices), so every commit paused scoring for 0.1-0.8 s
    # (issue #12 item 3). Above a flush's size, scoring goes on while the flush drains. This
    # widens the time a flush's local state is ahead of its queued site partials, which lost
    # one commit interval of the fleet analytics in a kill -9 (docs/faults.md) until the
    # partials outbox (`agents.analytics`) resent them after a restart.
    max_messages = 5_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.in_flight = 0  # messages taken from the queue and not yet handed to the client

    async def _send_pending(self, fut: FutureMessage) -> None:
        self.in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1

    async def flush(self) -> None:
        """Return once every message put before (and while) waiting was handed to the client."""
        app = self.app
        if app is not None and app.conf.producer_threaded:  # its queue lives in another thread
            await super().flush()
            return
        loop = asyncio.get_running_loop()
        stalled_since = loop.time()
        while self.size or self.in_flight:
            if self.state not in {"running", "stopping"}:  # no drain task to wait for
                raise RuntimeError(f"cannot flush: producer buffer {self.state}, {self.size} left")
            if self.should_stop and not self.in_flight:
                # stopping: the drain task takes no more messages (it leaves its loop after the
                # one it was handing over), so the rest is handed over here, in order
                await self._send_pending(self.pending.get_nowait())
                stalled_since = loop.time()
                continue
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                if loop.time() - stalled_since >= self.stall_s:
                    raise RuntimeError(
                        f"producer buffer stalled {self.stall_s:.0f} s with "
                        f"{self.size + self.in_flight} message(s) undelivered"
                    ) from None
                continue
            stalled_since = loop.time()


class DeliveringProducer(aiokafka_driver.Producer):
    """The aiokafka driver's producer with a `DeliveringBuffer`."""

    def __init__(
        self, transport: Any, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ):
        super().__init__(transport, loop=loop, **kwargs)
        buffer = DeliveringBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        if self.threaded_producer is not None:
            buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer


class DeliveringTransport(aiokafka_driver.Transport):
    """The aiokafka transport, making `DeliveringProducer`s."""

    Producer = DeliveringProducer


def install(app: faust.App) -> bool:
    """Give a Kafka app the `DeliveringTransport` (public `App.transport` setter) before its
    producer exists; other transports (`memory://` in tests) are left alone. True if installed."""
    url = app.conf.broker_consumer[0]
    if url.scheme not in {"kafka", "aiokafka"}:
        return False
    app.transport = DeliveringTransport(app.conf.broker_consumer, app)
    return True
