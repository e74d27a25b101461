"""`bench.memory.state_sizes`: the changelog values it reads back are the `DeviceState` bytes
themselves (the codec's current magic, EDS3, and the older ones) or Faust's JSON string of
their `repr`; both give the state's size. (It expected `EDS1` only, so a run on EDS3 states
died at the end, after its RSS samples, on `orjson.loads` of raw state bytes.)"""

from __future__ import annotations

import orjson

from bench.memory import state_sizes
from edgeml.models.scoring import Scorer


def test_state_sizes_reads_raw_and_json_wrapped_states() -> None:
    raw = Scorer(kernel="reference").new_state("dev-1").to_bytes()
    assert raw.startswith(b"EDS3")
    wrapped = orjson.dumps(repr(raw))
    sizes = state_sizes([raw, wrapped])
    assert sizes["devices"] == 2
    assert sizes["state_bytes_mean"] == len(raw)
    assert sizes["state_bytes_max"] == len(raw)
    assert sizes["changelog_bytes_mean"] == (len(raw) + len(wrapped)) / 2


def test_state_sizes_of_no_values() -> None:
    assert state_sizes([]) == {"devices": 0}
