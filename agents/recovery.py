"""Keep input messages out of the agents' queues while Faust seeks them after a recovery.

The loss (issue #9, fresh-disk kill window). At the end of table recovery, Faust 0.15.3
(`Recovery.on_recovery_completed` and `_resume_streams`) sends `app.on_rebalance_complete`,
resumes the stream partitions, awaits `consumer.perform_seek()` and only then calls
`app.flow_control.resume()`. Flow control is already active then (the recovery resumed it to
read the changelogs), so the fetcher delivers input messages into the agents' channel queues
during the seek, and `FlowControlEvent.resume()` clears those queues. The cleared messages
were never processed nor acked, and the consumer's read offset had already moved past them,
so their re-fetched copies are dropped as already read: gone, with no prediction and nothing
on the DLQ. The seek takes longer when the worker is busy; a replay of the preserved broker
state with the seek delayed 0.3 s dropped 81 queued messages (81 readings never predicted), as
the test run that lost 77.

The fix: suspend flow control when `on_rebalance_complete` is sent. Delivery (the conductor's
`acquire_flow_control`) then waits until Faust's own `flow_control.resume()`, which clears the
(empty) queues before the waiting deliveries go on. Nothing is in the queues when the signal
comes: the stream partitions are paused from the assignment until Faust resumes them after it.
When another rebalance starts first (Faust then returns without resuming), flow stays
suspended until that rebalance's recovery resumes it, as Faust suspends it for a rebalance.
"""

from __future__ import annotations

from typing import Any

import faust
from mode.types.signals import BaseSignalT

__all__ = ["hold_delivery_until_seeked"]


def hold_delivery_until_seeked(app: faust.App) -> None:
    """Connect the `on_rebalance_complete` receiver that suspends flow control (module
    docstring); Faust resumes it once the stream partitions are seeked."""

    async def suspend_flow(
        sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
    ) -> None:
        app.flow_control.suspend()

    app.on_rebalance_complete.connect(suspend_flow)
