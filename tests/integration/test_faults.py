"""The reduced fault run of issue #9 (`make faults-ci`): R1 with one kill -9, R1d, R4.

Same harness as `make faults` (`bench.faults`), at 3,000 readings from 20 devices sent over
8 s, against the session broker: real worker processes with the RocksDB store, killed or
poisoned, then every output read back by (device, seq). Each asserts what issue #9 asks of
every scenario: nothing lost, no false `late`, every poison message on the dead-letter topic
once, no valid reading there, the fleet total equal to a rebuild from the input topic, and no
stall or unexpected exit. Timing targets (resume <= 15 s) are printed by `make faults`, never
asserted here: a shared CI machine's seconds mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults.procs import Broker
from bench.faults.scenarios import Options, run_scenario

pytestmark = pytest.mark.integration

# R1d dies after its 2nd commit flush (commits every ~3 s): mid-run at this size, as the 3rd
# is in a 50,000-reading run.
SMALL = Options(readings=3_000, devices=20, seconds=8.0, kills=(0.5,), flush_kill=2)


@pytest.mark.parametrize("name", ["R1", "R1d", "R4"])
def test_fault_scenario_loses_nothing_and_counts_once(
    name: str, kafka_bootstrap: str, tmp_path: Path, unique_id: str
) -> None:
    result = run_scenario(name, Broker(kafka_bootstrap), tmp_path, unique_id[-8:], SMALL)
    story = "\n".join([*result.events, *result.figures.lines()])
    assert result.failures == [], story
    figures = result.figures
    # The harness itself must have exercised what it claims to: the kill happened and the
    # restart answered (R1; R1d's self-kill is a failure above when it does not happen), and
    # every poison kind was sent and found (R4).
    assert figures.sent > 0 and figures.predicted == figures.sent
    if name == "R1":  # killed at 50 %: the restart has work left and is timed
        assert len(result.timings["resumed_s"]) == 1, story
        assert all(s is not None for s in result.timings["resumed_s"]), story
    if name == "R4":
        assert figures.poison_sent >= 9 and figures.poison_on_dlq_once == figures.poison_sent
        assert figures.rebuild_dead_letters == figures.poison_sent
