"""Quiet broker outages: `BrokerOutageFilter` turns the Kafka client's connection errors into one
WARNING per interval with a count of what it suppressed.

Measured (issue #9): with the broker killed for 34 s, one idle worker logged 4,915 ERROR lines,
all from aiokafka's reconnect loops: `Unable connect to node` (2,455), `Unable to update
metadata` (1,121), `Failed fetch messages` (1,005), `Group Coordinator Request failed` (328).
None says more than "the broker is not answering", which `/health` reports anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["BrokerOutageFilter", "is_broker_unreachable"]

# What aiokafka logs (WARNING and above) while a broker does not answer: the message templates
# of `aiokafka/client.py`, `consumer/fetcher.py` and `consumer/group_coordinator.py`, and the
# error names its other messages carry when the cause is the connection.
_TEMPLATES = (
    "Unable connect to node",
    "Unable to update metadata",
    "Failed fetch messages from",
    "Group Coordinator Request failed",
    "Marking the coordinator dead",
    "Heartbeat send request failed",
    "Error sending HeartbeatRequest",
    "Coordinator lookup failed",
)
_CAUSES = (
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Connection refused",
    "RequestTimedOutError",
    "GroupCoordinatorNotAvailableError",
)
_LOGGERS = ("aiokafka", "kafka")


def is_broker_unreachable(record: logging.LogRecord) -> bool:
    """Is this a Kafka client's "the broker does not answer" message (WARNING or above)?"""
    if record.levelno < logging.WARNING:
        return False
    if not record.name.startswith(_LOGGERS):
        return False
    template = str(record.msg)
    if template.startswith(_TEMPLATES):
        return True
    message = record.getMessage()
    return any(cause in message for cause in _CAUSES)


class BrokerOutageFilter(logging.Filter):
    """Lets one broker-unreachable message through per `interval_s`, as a WARNING that says how
    many it suppressed since the last one; every other record passes unchanged.

    Installed on the root logger's handlers by the worker (`app.lifecycle.Worker`): a
    filter on the `aiokafka` logger would not see the records of its child loggers.
    """

    def __init__(
        self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last_passed: float | None = None
        self.suppressed = 0  # since the last message let through

    def filter(self, record: logging.LogRecord) -> bool:
        if not is_broker_unreachable(record):
            return True
        decided = getattr(record, "edgeml_outage", None)
        if decided is not None:
            return bool(decided)  # the filter sits on several handlers: decide once per record
        now = self._clock()
        if self._last_passed is not None and now - self._last_passed < self.interval_s:
            self.suppressed += 1
            record.edgeml_outage = False
            return False
        since = None if self._last_passed is None else now - self._last_passed
        self._last_passed = now
        original = record.getMessage()
        if since is None:
            record.msg = "Kafka broker unreachable: %s (similar messages: one per %.0f s)"
            record.args = (original, self.interval_s)
        else:
            record.msg = "Kafka broker unreachable: %s (%d similar messages suppressed in %.0f s)"
            record.args = (original, self.suppressed, since)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None  # a traceback per reconnect says nothing
        record.edgeml_outage = True
        self.suppressed = 0
        return True
