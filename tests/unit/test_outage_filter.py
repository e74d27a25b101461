"""`BrokerOutageFilter`: one WARNING per interval while the broker is unreachable."""

from __future__ import annotations

import logging

import pytest

from edgeml.app.outage import BrokerOutageFilter, is_broker_unreachable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def _refused(node: int = 1) -> logging.LogRecord:
    return _record(
        "aiokafka.client", logging.ERROR, "Unable connect to node with id %s: %s", node,
        ConnectionRefusedError(111, "Connect call failed"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (_refused(), True),
        (_record("aiokafka.client", logging.ERROR, "Unable to update metadata from %s", [1]), True),
        (_record("aiokafka.consumer.fetcher", logging.ERROR,
                 "Failed fetch messages from %s: %s", 1, "NodeNotReadyError: not ready"), True),
        (_record("aiokafka.consumer.group_coordinator", logging.ERROR,
                 "Group Coordinator Request failed: %s", "NodeNotReadyError"), True),
        (_record("aiokafka.conn", logging.ERROR, "boom: %s", "KafkaConnectionError: closed"), True),
        # not the broker's absence, or not a Kafka client's message, or below WARNING
        (_record("aiokafka.client", logging.ERROR, "Topic %s not found in cluster metadata", "t"),
         False),
        (_record("edgeml.app.factory", logging.ERROR,
                 "Unable connect to node with id %s: %s", 1, "x"),
         False),
        (_record("aiokafka.client", logging.INFO, "Unable connect to node with id %s: %s", 1, "x"),
         False),
    ],
)  # fmt: skip
def test_what_counts_as_broker_unreachable(record: logging.LogRecord, expected: bool) -> None:
    assert is_broker_unreachable(record) is expected


def test_one_warning_per_interval_with_the_count_suppressed() -> None:
    clock = Clock()
    quiet = BrokerOutageFilter(interval_s=30.0, clock=clock)
    first = _refused()
    assert quiet.filter(first)
    assert first.levelno == logging.WARNING and first.levelname == "WARNING"
    assert first.getMessage().startswith("Kafka broker unreachable: Unable connect to node")
    passed = []
    for step in range(1, 61):  # 60 messages over 29.5 s: all suppressed
        clock.now = 1000.0 + step * 29.5 / 60
        record = _refused()
        if quiet.filter(record):
            passed.append(record)
    assert passed == []
    assert quiet.suppressed == 60
    clock.now = 1030.0
    summary = _record("aiokafka.client", logging.ERROR, "Unable to update metadata from %s", [1])
    assert quiet.filter(summary)
    assert summary.levelno == logging.WARNING
    assert summary.getMessage() == (
        "Kafka broker unreachable: Unable to update metadata from [1] "
        "(60 similar messages suppressed in 30 s)"
    )
    assert quiet.suppressed == 0
    assert not quiet.filter(_refused())  # and the next interval starts again


def test_other_records_pass_unchanged() -> None:
    quiet = BrokerOutageFilter(interval_s=30.0, clock=Clock())
    assert quiet.filter(_refused())
    other = _record("aiokafka.client", logging.ERROR, "Topic %s not found in cluster metadata", "t")
    assert quiet.filter(other)
    assert (
        other.levelno == logging.ERROR
        and other.getMessage() == "Topic t not found in cluster metadata"
    )
    mine = _record(
        "edgeml.app.tail", logging.ERROR, "Unable connect to node with id %s: %s", 1, "x"
    )
    assert quiet.filter(mine) and mine.levelno == logging.ERROR


def test_a_record_is_decided_once_across_handlers() -> None:
    quiet = BrokerOutageFilter(interval_s=30.0, clock=Clock())
    passed, suppressed = _refused(), _refused()
    assert quiet.filter(passed) and quiet.filter(passed)  # second handler: same answer
    assert not quiet.filter(suppressed) and not quiet.filter(suppressed)
    assert quiet.suppressed == 1


def test_through_a_real_logger(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = BrokerOutageFilter(interval_s=30.0, clock=clock)
    caplog.handler.addFilter(quiet)
    try:
        log = logging.getLogger("aiokafka.client")
        with caplog.at_level(logging.INFO):
            for _ in range(1000):
                log.error("Unable connect to node with id %s: %s", 1, "[Errno 111] refused")
            clock.now += 31
            log.error("Unable connect to node with id %s: %s", 1, "[Errno 111] refused")
    finally:
        caplog.handler.removeFilter(quiet)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "(999 similar messages suppressed in 31 s)" in caplog.records[1].getMessage()
