"""`agents.recovery`: no input message is lost to the seek Faust does after a table recovery.

Faust 0.15.3 ends a recovery with: `on_rebalance_complete` sent, stream partitions resumed,
`await consumer.perform_seek()`, then `app.flow_control.resume()`, which clears the agents'
channel queues. The tests replay that order with the app's real flow control, signal and
channel queue; a message is delivered the way the conductor does (`acquire()` the flow
control, then put) while the seek is awaited. Without the fix that message is in the queue
when `resume()` clears it: lost unprocessed (issue #9, fresh-disk kill window).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust

from edgeml.agents.recovery import hold_delivery_until_seeked
from edgeml.app.factory import build_worker
from edgeml.app.settings import Settings


async def _recovery_end_with_delivery_during_seek(app: faust.App) -> list[str]:
    """What the stream's queue holds after Faust's end-of-recovery steps, with one message
    fetched while `perform_seek` was awaited."""
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # a channel's queue
    app.flow_control.resume()  # the recovery resumed flow to read the changelogs

    async def deliver(value: str) -> None:  # the conductor's on_message
        await app.flow_control.acquire()
        queue.put_nowait(value)

    await app.on_rebalance_complete.send()
    delivery = asyncio.ensure_future(deliver("reading fetched during the seek"))
    await asyncio.sleep(0)  # perform_seek awaits the consumer thread: the fetcher runs
    app.flow_control.resume()
    await asyncio.wait_for(delivery, timeout=5)
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def test_a_message_fetched_during_the_post_recovery_seek_is_kept() -> None:
    app = faust.App("recovery-test", store="memory://", autodiscover=False)
    app.finalize()
    hold_delivery_until_seeked(app)
    assert await _recovery_end_with_delivery_during_seek(app) == ["reading fetched during the seek"]


async def test_without_the_hold_faust_clears_that_message() -> None:
    """The failure the hold prevents, shown on the same steps (this fails if Faust stops
    clearing the queues on resume; the hold may then go)."""
    app = faust.App("recovery-test-bare", store="memory://", autodiscover=False)
    app.finalize()
    assert await _recovery_end_with_delivery_during_seek(app) == []


async def test_the_worker_holds_delivery_until_faust_resumes_flow(
    settings_factory: Callable[..., Settings],
) -> None:
    app = build_worker(settings_factory()).app
    app.flow_control.resume()
    await app.on_rebalance_complete.send()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert app.flow_control.is_active()
