"""`agents.score.inbounds`: a batch's events as the pipeline's `Inbound`s, in order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from edgeml.agents.score import inbound, inbounds
from edgeml.models.pipeline import Inbound


def _event(key: bytes | None, value: bytes | None, partition: int, offset: int) -> Any:
    message = SimpleNamespace(
        key=key, value=value, topic="readings", partition=partition, offset=offset
    )
    return SimpleNamespace(message=message)


def test_inbounds_are_the_events_in_order() -> None:
    events = [_event(b"d1", b"{}", 0, 7), _event(None, None, 3, 1), _event(b"d1", b"x", 0, 8)]
    assert (
        inbounds(cast(Any, events))
        == [inbound(e) for e in events]
        == [
            Inbound(b"d1", b"{}", "readings", 0, 7),
            Inbound(None, None, "readings", 3, 1),
            Inbound(b"d1", b"x", "readings", 0, 8),
        ]
    )
    assert inbounds([]) == []
