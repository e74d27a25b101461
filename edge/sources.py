"""Sensor sources: where the agent's raw messages come from, batched for the event loop.

A source is a name and a factory of a plain iterator of raw messages (bytes: one reading or a
`{"readings": [...]}` envelope in the platform's wire format). `ThreadedSource` runs the
iterator in a thread (file and stdin reads block; the simulator's pacing sleeps) and hands
batches to the loop through a bounded queue, so a slow commit holds the reader back instead of
buffering without limit.

Resumable sources (a file, the simulator: the same messages in the same order on every run)
skip the messages the last committed batch consumed (`position`, committed with the batch,
`edge.runner`); stdin and MQTT cannot be replayed, and what they re-send is recognised by the
devices' seq marks. The simulator and CSV parsing live with the CLI (`app/cli/edge.py`): this
package does not import the simulator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from edgeml.edge.errors import EdgeError

__all__ = ["MessageBatch", "SourceError", "ThreadedSource", "iter_lines", "paced"]

_END = object()


class SourceError(EdgeError):
    """The source cannot be read further (unreadable file, a CSV line that does not parse)."""


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """Messages read, and the source position after them (messages consumed in total)."""

    messages: list[bytes]
    position: int


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Non-empty lines of a JSON Lines stream, each one message (whitespace stripped)."""
    for line in stream:
        line = line.strip()
        if line:
            yield line


def paced(
    messages: Iterable[bytes],
    rate: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[bytes]:
    """`messages` at `rate` per second on average (0 = as fast as they come)."""
    if rate <= 0:
        yield from messages
        return
    start = clock()
    for n, message in enumerate(messages):
        wait = start + n / rate - clock()
        if wait > 0:
            sleep(wait)
        yield message


async def _get_unless(queue: asyncio.Queue[object], stop: asyncio.Event | None) -> object:
    """The next item, or None once `stop` is set first."""
    if stop is None:
        return await queue.get()
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if getter in done:
        return getter.result()
    getter.cancel()
    return None


class ThreadedSource:
    """A message iterator read in a thread and batched for the loop (module docstring).

    `name` identifies the stream of messages for the resume position (None: not resumable).
    """

    def __init__(
        self,
        name: str | None,
        open_messages: Callable[[], Iterable[bytes]],
        *,
        queue_batches: int = 4,
    ) -> None:
        self.name = name
        self._open = open_messages
        self._queue_batches = queue_batches
        self.ended = False

    async def batches(
        self, start: int, max_size: int, within_s: float, stop: asyncio.Event | None = None
    ) -> AsyncIterator[MessageBatch]:
        """Batches of at most `max_size` messages, each closed after `within_s` once it has
        one; `start` messages are skipped first (resumable sources). Ends when `stop` is set,
        also while waiting for a source that has nothing to say (stdin, MQTT)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max_size * self._queue_batches)
        halted = threading.Event()  # tells the reader thread to end

        def put(item: object) -> bool:
            """Hand `item` to the loop, waiting while the queue is full; False once stopped."""
            try:
                future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            except RuntimeError:  # the loop is closed
                return False
            while not halted.is_set():
                try:
                    future.result(timeout=0.5)
                    return True
                except concurrent.futures.TimeoutError:
                    continue
            future.cancel()
            return False

        def read() -> None:
            try:
                messages = iter(self._open())
                if start:
                    next(itertools.islice(messages, start - 1, start), None)  # skip `start`
                for message in messages:
                    if not put(message):
                        return
            except Exception as exc:  # reported on the loop, never lost in the thread
                put(SourceError(f"the source {self.name or 'stream'} failed: {exc}"))
                return
            put(_END)

        thread = threading.Thread(target=read, name="edge-source", daemon=True)
        thread.start()
        position = start
        try:
            while True:
                first = await _get_unless(queue, stop)
                if first is None:
                    return
                if first is _END:
                    self.ended = True
                    return
                if isinstance(first, BaseException):
                    raise first
                assert isinstance(first, bytes)
                batch = [first]
                deadline = loop.time() + within_s
                end = False
                while len(batch) < max_size:
                    try:
                        item = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        try:
                            item = await asyncio.wait_for(queue.get(), left)
                        except TimeoutError:
                            break
                    if item is _END:
                        end = True
                        break
                    if isinstance(item, BaseException):
                        yield MessageBatch(batch, position + len(batch))
                        raise item
                    assert isinstance(item, bytes)
                    batch.append(item)
                position += len(batch)
                yield MessageBatch(batch, position)
                if end:
                    self.ended = True
                    return
        finally:
            halted.set()
            while not queue.empty():  # unblock a reader waiting on a full queue
                queue.get_nowait()
