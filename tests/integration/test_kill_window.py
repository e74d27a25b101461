"""The kill window: a worker SIGKILLed after a commit flush wrote its state and before that
commit's offsets were committed, then restarted without the hook. Two points:

- `after-flush` (`EDGEML_FAULT_KILL_AFTER_FLUSH`): after the producer flush, everything the
  flush wrote acked by the broker;
- `before-sends` (`EDGEML_FAULT_KILL_BEFORE_SENDS`): right after the flush wrote the state
  locally, with every changelog message and site partial still in the producer buffer. On the
  same disk the state then records readings whose site partials never left; the partials
  outbox resends them (before it, this lost one commit interval of the fleet's count).

State is then ahead of the committed offsets, so the restarted worker re-reads readings its
state already applied. Checked against the input topic:

- every (device, seq) got a prediction (held writes: no state is flushed before its batch's
  predictions are acked, so no reading is recognised as applied without its prediction);
- no prediction is flagged `late` unless its reading was out of order in the input (the
  re-read readings are recognised by seq instead of being scored against a newer watermark);
- the fleet's analytics count every reading exactly once (partials held to the commit);
- duplicates are reported (printed): only readings published after the last flush but before
  the kill are scored again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from edgeml.app.settings import Settings

pytestmark = pytest.mark.integration

DEVICES, PER_DEVICE = 10, 400
READINGS = DEVICES * PER_DEVICE
RATE = 400  # readings/s: ~10 s of traffic, several commit intervals (Faust's is 2.8 s)


def _input(settings: Settings) -> list[tuple[int, int, dict[str, Any]]]:
    """(partition, offset, reading) of every input message, in partition order."""
    consumer = KafkaConsumer(
        settings.topic("sensor-readings"), bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
    )  # fmt: skip
    try:
        out = [(m.partition, m.offset, json.loads(m.value)) for m in consumer]
    finally:
        consumer.close()
    return sorted(out, key=lambda item: (item[0], item[1]))


def _late_in_input(readings: list[tuple[int, int, dict[str, Any]]]) -> set[tuple[str, int]]:
    """(device, seq) of readings older than an earlier reading of their device: the only
    ones the pipeline may call late (late = behind the device's event-time watermark)."""
    newest: dict[str, float] = {}
    late: set[tuple[str, int]] = set()
    for _, _, r in readings:  # a device's readings share one partition: this is their order
        device = r["device_id"]
        if r["ts"] < newest.get(device, float("-inf")):
            late.add((device, r["seq"]))
        newest[device] = max(newest.get(device, float("-inf")), r["ts"])
    return late


def _fleet_count(base: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{base}/analytics/fleet", timeout=10) as response:
            totals = json.loads(response.read()).get("totals")
    except OSError:
        return None
    return None if not totals else int(totals["count"])


# Issue #9: with a fresh data dir (state recovered from the changelogs) this lost 77 and 6
# readings in 2 of 3 runs (none on the DLQ): Faust resumes the input partitions before its
# post-recovery seek and clears the agents' queues after it, dropping what was fetched in
# between (`agents.recovery`, tests/agents/test_recovery.py).


@pytest.mark.parametrize(
    ("point", "disk"),
    [("after-flush", "same-disk"), ("after-flush", "fresh-disk"), ("before-sends", "same-disk")],
)
def test_a_kill_between_state_flush_and_offset_commit_is_harmless(
    point: str,
    disk: str,
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    read_records: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    hook = "fault_kill_after_flush" if point == "after-flush" else "fault_kill_before_sends"
    settings = settings_factory(store="rocksdb://", data_dir=tmp_path / "data", **{hook: 2})
    first = worker_factory(settings)
    sim = run_cli(
        settings, "simulate", "--devices", str(DEVICES), "--count", str(PER_DEVICE),
        "--seed", "29", "--rate", str(RATE), "--no-progress",
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert first.wait(timeout=120) == -9, "the fault hook did not kill the worker"
    log = (tmp_path / "worker-1.log").read_text(errors="replace")
    assert "fault injection: SIGKILL after commit flush 2" in log
    before = len(read_records(settings, "predictions", idle_ms=1000))
    assert 0 < before < READINGS, f"killed outside the run: {before} predictions"

    data_dir = tmp_path / "data" if disk == "same-disk" else tmp_path / "fresh-disk"
    worker_factory(settings.model_copy(update={hook: 0, "data_dir": data_dir}))
    deadline = time.monotonic() + 240
    seen: list[int] = [-1]
    while True:  # caught up: every reading predicted and nothing new for a while
        predictions = read_records(settings, "predictions", idle_ms=1500)
        unique = {(p["device_id"], p["seq"]) for p in predictions}
        if len(unique) >= READINGS and len(predictions) == seen[-1]:
            break
        if time.monotonic() >= deadline:
            sent_keys = {(r["device_id"], r["seq"]) for _, _, r in _input(settings)}
            missing = sorted(sent_keys - unique)
            pytest.fail(f"no steady state: {len(unique)} unique, {len(missing)} never predicted: "
                        f"{missing[:20]}, counts {seen[-3:]}")  # fmt: skip
        seen.append(len(predictions))
        time.sleep(2)

    readings = _input(settings)
    sent = {(r["device_id"], r["seq"]) for _, _, r in readings}
    assert len(sent) == READINGS == len(readings)
    counts = Counter((p["device_id"], p["seq"]) for p in predictions)
    assert set(counts) == sent, f"lost: {sorted(sent - set(counts))[:10]}"
    flagged = {(p["device_id"], p["seq"]) for p in predictions if p.get("late")}
    false_late = flagged - _late_in_input(readings)
    assert not false_late, (
        f"{len(false_late)} re-read readings marked late: {sorted(false_late)[:10]}"
    )
    duplicates = sum(n - 1 for n in counts.values())
    sys.stderr.write(
        f"[kill-window {point} {disk}] {len(predictions)} predictions for {READINGS} readings, "
        f"{before} before the kill, {duplicates} duplicates, {len(flagged)} late\n"
    )

    # The fleet's aggregates count each reading once (the site partials go to another
    # partition's owner, the same worker here; they settle after the next commit).
    base = settings.web_url()
    fleet: list[int | None] = []
    while not fleet or fleet[-1] != READINGS:
        assert time.monotonic() < deadline + 60, f"fleet count {fleet[-5:]} != {READINGS}"
        time.sleep(2)
        fleet.append(_fleet_count(base))
    time.sleep(6)  # two more commit intervals: nothing re-delivered may be added afterwards
    assert _fleet_count(base) == READINGS
