"""After a scenario: read every output topic back by (device, seq) and judge it.

`Figures` holds what `make faults` prints: sent, predicted, lost, duplicates (and how many of
them carry `redelivered: true` or a score that differs from the first copy), false `late`
(the input is in event-time order per device, so every `late` is false), the dead-letter topic
checked message by message against the poison sent (by origin partition/offset), and the
analytics fleet total against a rebuild from the input topic.

The rebuild follows tests/integration/test_analytics.py: valid input = every input message the
dead-letter topic does not name by origin offset; its distinct (device, seq) are the readings
the fleet must count once each, and the named offsets are its dead letters. Every reading of a
run lies within the analytics retention (`traffic.build_plan` ends the run about now and spans
far less than `EDGEML_ANALYTICS_RETENTION_S`), so "equal" is exact equality of both counts.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bench.checker import Probe, readings_in
from bench.faults.procs import Worker
from bench.faults.traffic import Plan, Producer

__all__ = ["Figures", "fleet_totals", "judge", "read_back"]


@dataclass
class Figures:
    """One run's outcome; `failures()` lists every assertion of issue #9 that does not hold."""

    sent: int = 0
    poison_sent: int = 0
    predicted: int = 0
    lost: int = 0
    duplicates: int = 0
    redelivered_flagged: int = 0
    duplicates_differing: int = 0  # a second copy with another anomaly score
    late: int = 0  # distinct (device, seq) predicted with late: true
    late_topic: int = 0
    poison_predicted: int = 0  # predictions for (device, seq) that were sent as poison / never
    dlq: int = 0
    poison_on_dlq_once: int = 0
    poison_missing: dict[str, int] = field(default_factory=dict)  # by kind
    poison_repeated: int = 0
    valid_on_dlq: int = 0
    dlq_classes: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> class -> n
    rebuild_count: int = 0
    rebuild_dead_letters: int = 0
    rebuild_undecodable: int = 0
    fleet_count: int | None = None
    fleet_dead_letters: int | None = None
    fleet_late: int | None = None

    def failures(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{self.lost:,} valid readings never predicted")
        if self.late or self.late_topic:
            out.append(
                f"{self.late:,} false late predictions ({self.late_topic:,} on the late topic)"
            )
        missing = sum(self.poison_missing.values())
        if missing:
            out.append(f"{missing:,} poison messages not on the DLQ {self.poison_missing}")
        if self.poison_repeated:
            out.append(f"{self.poison_repeated:,} poison messages on the DLQ more than once")
        if self.valid_on_dlq:
            out.append(f"{self.valid_on_dlq:,} valid readings on the DLQ")
        if self.poison_predicted:
            out.append(f"{self.poison_predicted:,} predictions for readings never sent as valid")
        fleet = (self.fleet_count, self.fleet_dead_letters)
        rebuild = (self.rebuild_count, self.rebuild_dead_letters)
        if fleet != rebuild:
            out.append(f"fleet (count, dead letters) {fleet} != rebuild from the input {rebuild}")
        return out

    def lines(self) -> list[str]:
        fleet = "n/a" if self.fleet_count is None else f"{self.fleet_count:,}"
        dead = "n/a" if self.fleet_dead_letters is None else f"{self.fleet_dead_letters:,}"
        same = "equal" if (self.fleet_count, self.fleet_dead_letters) == (
            self.rebuild_count, self.rebuild_dead_letters) else "DIFFERENT"  # fmt: skip
        return [
            f"sent {self.sent:,} valid + {self.poison_sent:,} poison | predicted "
            f"{self.predicted:,} | lost {self.lost:,} | duplicates {self.duplicates:,} "
            f"(redelivered-flagged {self.redelivered_flagged:,}, other score "
            f"{self.duplicates_differing:,}) | late {self.late:,} (late topic "
            f"{self.late_topic:,}) | DLQ {self.dlq:,} (poison once {self.poison_on_dlq_once:,}"
            f"/{self.poison_sent:,}, valid {self.valid_on_dlq:,})",
            f"fleet {fleet} readings / {dead} dead letters vs rebuild {self.rebuild_count:,} / "
            f"{self.rebuild_dead_letters:,}: {same}",
        ]

    def class_line(self) -> str:
        """Dead-letter error classes by what was sent ('valid' = a valid reading)."""
        return "DLQ classes: " + "; ".join(
            f"{kind} " + ",".join(f"{c} {n}" for c, n in classes.items())
            for kind, classes in self.dlq_classes.items()
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_back(probe: Probe, topic: str) -> list[Any]:
    """Every record of `topic` so far (none if it does not exist)."""
    try:
        return probe.read(topic, {})
    except RuntimeError:  # no partitions: the worker never created it
        return []


def judge(probe: Probe, prefix: str, plan: Plan, producer: Producer) -> Figures:
    """Read input, predictions, DLQ and late topic back and count (see the module docstring)."""
    figures = Figures()
    valid = plan.valid
    figures.sent = len(valid)
    poison = {producer.poison_at[i]: m for i, m in enumerate(plan.messages)
              if m.poison and i in producer.poison_at}  # fmt: skip
    figures.poison_sent = sum(1 for m in plan.messages if m.poison)
    input_topic = f"{prefix}sensor-readings"

    first_score: dict[tuple[str, int], Any] = {}
    late: set[tuple[str, int]] = set()
    copies = 0
    for record in read_back(probe, f"{prefix}predictions"):
        for p in readings_in(record.value):
            key = (p["device_id"], p["seq"])
            copies += 1
            if p.get("late"):
                late.add(key)
            if key in first_score:
                figures.redelivered_flagged += bool(p.get("redelivered"))
                figures.duplicates_differing += first_score[key] != p.get("anomaly_score")
            else:
                first_score[key] = p.get("anomaly_score")
    seen = set(first_score)
    figures.predicted = len(seen & valid)
    figures.lost = len(valid - seen)
    figures.duplicates = copies - len(seen)
    figures.late = len(late)
    figures.poison_predicted = len(seen - valid)
    figures.late_topic = len(read_back(probe, f"{prefix}sensor-readings.late"))

    origins: Counter[tuple[int, int]] = Counter()
    classes: dict[str, Counter[str]] = {}
    letters = read_back(probe, f"{prefix}sensor-readings.dlq")
    figures.dlq = len(letters)
    for letter in letters:
        headers = {k: v.decode(errors="replace") for k, v in letter.headers or ()}
        if headers.get("edgeml.origin.topic", input_topic) != input_topic:
            continue
        origin = (int(headers["edgeml.origin.partition"]), int(headers["edgeml.origin.offset"]))
        origins[origin] += 1
        kind = poison[origin].poison if origin in poison else "valid"
        classes.setdefault(kind, Counter())[headers.get("edgeml.error.class", "?")] += 1
    figures.dlq_classes = {kind: dict(c) for kind, c in sorted(classes.items())}
    figures.valid_on_dlq = sum(n for o, n in origins.items() if o not in poison)
    for origin, message in poison.items():
        n = origins.get(origin, 0)
        figures.poison_on_dlq_once += n == 1
        figures.poison_repeated += n > 1
        if n == 0:
            figures.poison_missing[message.poison] = (
                figures.poison_missing.get(message.poison, 0) + 1
            )
    unacked = figures.poison_sent - len(poison)
    if unacked:
        figures.poison_missing["(send not acknowledged)"] = unacked

    rebuilt: set[tuple[str, int]] = set()
    for record in read_back(probe, input_topic):
        if (record.partition, record.offset) in origins:
            figures.rebuild_dead_letters += 1
            continue
        try:
            items = readings_in(record.value)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            figures.rebuild_undecodable += 1  # neither on the DLQ nor a reading: counted nowhere
            continue
        rebuilt.update((r["device_id"], r["seq"]) for r in items if isinstance(r, dict)
                       and "device_id" in r and "seq" in r)  # fmt: skip
    figures.rebuild_count = len(rebuilt)
    return figures


def fleet_totals(
    worker: Worker, want: tuple[int, int], *, steady_s: float = 20.0, timeout_s: float = 90.0
) -> dict[str, Any]:
    """`/analytics/fleet` totals once (count, dead letters) equals `want`, else the last ones
    after the answer stopped changing for `steady_s` (site partials arrive a commit or two
    after the scores) or `timeout_s`. Without totals: only `answer`, the last reply."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    since = time.monotonic()
    status, body = 0, None
    while time.monotonic() < deadline and time.monotonic() - since < steady_s:
        status, body = worker.get("/analytics/fleet")
        totals = body.get("totals") if status == 200 and isinstance(body, dict) else None
        if totals and (totals.get("count"), totals.get("dead_letters")) == want:
            return dict(totals)
        answer = totals if totals else (status, body)
        if answer != last:
            last, since = answer, time.monotonic()
        time.sleep(1.0)
    if isinstance(last, dict):
        return dict(last)
    return {"answer": f"{status} {body}"[:300]}
