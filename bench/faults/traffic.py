"""What a fault scenario sends: simulated readings with known (device, seq), plus poison.

`build_plan(spec)` lays the run out in event-time order (`sim.generator`), with `poison_fraction`
of the valid readings' count added as poison messages of every kind in `POISON_KINDS`, spread
evenly: the six kinds of `sim.malformed`, metric values of 1e308 and 1e200 on devices that have
already sent `WARM_READINGS` readings (issue #9: anything above about 1.3e154 on a warmed-up
device poisoned its detector state), and JSON nested 3,000-5,000 levels deep (orjson refuses
it; the fallback decoder recursed). A huge-value message *is* that device's reading `seq` (a
sensor that went mad), so it replaces the valid reading rather than adding one; every other
kind is an extra message (seq numbers from `MALFORMED_SEQ_BASE`, no clash with valid ones).

`Producer` sends the plan from a thread at a fixed rate with an idempotent kafka-python
producer and keeps each poison message's (partition, offset), which is how the checker finds it
on the dead-letter topic (`edgeml.origin.*` headers).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from edgeml.sim.generator import SimConfig, simulate
from edgeml.sim.malformed import MALFORMED_KINDS, malformed

__all__ = [
    "POISON_KINDS",
    "WARM_READINGS",
    "Message",
    "Plan",
    "Producer",
    "TrafficSpec",
    "build_plan",
]

HUGE_KINDS = {"huge_1e308": 1e308, "huge_1e200": 1e200}
POISON_KINDS: tuple[str, ...] = (*MALFORMED_KINDS, *HUGE_KINDS, "deep_json")
WARM_READINGS = 50  # readings a device has sent before it gets a huge value
# Readings are 1 s apart per device; the fleet's totals cover EDGEML_ANALYTICS_RETENTION_S
# (default 3600) behind its newest reading, so a run must span less for "equal" to be exact.
MAX_SPAN_S = 3000


@dataclass(frozen=True)
class TrafficSpec:
    """One run's input: `readings` valid readings over `devices` devices, sent in `seconds`."""

    readings: int
    devices: int = 100
    seconds: float = 20.0
    poison_fraction: float = 0.0
    seed: int = 9

    def __post_init__(self) -> None:
        if self.readings < self.devices or self.devices < 1:
            raise ValueError(f"need readings >= devices >= 1, got {self.readings}/{self.devices}")
        if self.readings // self.devices > MAX_SPAN_S:
            raise ValueError(
                f"{self.readings // self.devices} readings per device span more event seconds "
                f"than the fleet check allows ({MAX_SPAN_S}, under the analytics retention): "
                "use more devices"
            )
        if not 0.0 <= self.poison_fraction < 0.5 or self.seconds <= 0:
            raise ValueError("poison_fraction must be in [0, 0.5) and seconds > 0")


@dataclass(frozen=True, slots=True)
class Message:
    """One input message. `poison` is '' for a valid reading, else its kind."""

    key: bytes
    poison: str
    device_id: str
    seq: int
    reading: dict[str, Any] | None = None  # a valid reading (sent_at set when sent)
    raw: bytes = b""  # a poison message's exact bytes

    def encode(self, sent_at: float) -> bytes:
        if self.reading is None:
            return self.raw
        return orjson.dumps({**self.reading, "sent_at": sent_at})


@dataclass
class Plan:
    """Every message of a run in send order, and what the checker expects of it."""

    messages: list[Message]
    start_ts: float
    end_ts: float

    @property
    def valid(self) -> set[tuple[str, int]]:
        return {(m.device_id, m.seq) for m in self.messages if not m.poison}

    def poison_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.messages:
            if m.poison:
                counts[m.poison] = counts.get(m.poison, 0) + 1
        return counts


def build_plan(spec: TrafficSpec) -> Plan:
    """The run's messages: readings end about now (so nothing is too old for the analytics
    retention or in the future), poison spread evenly (see the module docstring)."""
    per_device = spec.readings // spec.devices
    start_ts = round(time.time() - per_device - 5.0, 3)
    config = SimConfig(devices=spec.devices, count=per_device, seed=spec.seed, start_ts=start_ts,
                       warmup=60.0, incident_every=300.0)  # fmt: skip
    readings = [r.to_wire() for r in simulate(config).readings()]
    total = len(readings)
    n_poison = round(total * spec.poison_fraction)
    if spec.poison_fraction > 0:
        n_poison = max(n_poison, len(POISON_KINDS))
    rng = np.random.default_rng(spec.seed)
    kinds = [POISON_KINDS[j % len(POISON_KINDS)] for j in range(n_poison)]
    device_ids = sorted({r["device_id"] for r in readings})
    bad = malformed(
        sum(k in MALFORMED_KINDS for k in kinds), rng, device_ids=device_ids, ts=start_ts
    )
    by_kind: dict[str, list[Message]] = {}
    for record in bad:
        m = Message(record.key, record.kind, record.key.decode(), -1, raw=record.value)
        by_kind.setdefault(record.kind, []).append(m)
    inserted: dict[int, list[Message]] = {}
    replaced: dict[int, Message] = {}
    warm = min(WARM_READINGS * spec.devices, total // 2)
    deep_seq = 2_000_000_000
    for j, kind in enumerate(kinds):
        slot = int((j + 0.5) * total / n_poison)
        if kind in HUGE_KINDS:
            slot = warm + int((j + 0.5) * (total - warm) / n_poison)
            while slot in replaced:
                slot = (slot + 1 - warm) % (total - warm) + warm
            replaced[slot] = _huge(readings[slot], kind, j)
        elif kind == "deep_json":
            device = device_ids[int(rng.integers(len(device_ids)))]
            depth = int(rng.integers(3_000, 5_001))
            raw = _deep(device, readings[slot]["ts"], deep_seq + j, depth, variant=j % 3)
            inserted.setdefault(slot, []).append(Message(device.encode(), kind, device, -1,
                                                         raw=raw))  # fmt: skip
        else:
            inserted.setdefault(slot, []).append(by_kind[kind].pop())
    messages: list[Message] = []
    for i, wire in enumerate(readings):
        messages.extend(inserted.get(i, ()))
        device, seq = wire["device_id"], wire["seq"]
        messages.append(replaced.get(i) or Message(device.encode(), "", device, seq, reading=wire))
    return Plan(messages, start_ts=config.start_ts, end_ts=config.end_ts)


def _huge(wire: dict[str, Any], kind: str, j: int) -> Message:
    """The device's own reading with one metric replaced by a huge finite value."""
    metrics = dict(wire["metrics"])
    name = sorted(metrics)[j % len(metrics)]
    metrics[name] = HUGE_KINDS[kind] * (-1 if j % 2 else 1)
    raw = orjson.dumps({**wire, "metrics": metrics, "sent_at": time.time()})
    return Message(wire["device_id"].encode(), kind, wire["device_id"], wire["seq"], raw=raw)


def _deep(device: str, ts: float, seq: int, depth: int, *, variant: int) -> bytes:
    """JSON `depth` levels deep: bare arrays, objects inside a metric, or arrays in `metrics`."""
    if variant == 0:
        return b"[" * depth + b"]" * depth
    head = f'{{"device_id":"{device}","ts":{ts},"seq":{seq},"v":1,"metrics":'.encode()
    if variant == 1:
        return head + b'{"temperature":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}}"
    return head + b"[" * depth + b"1.0" + b"]" * depth + b"}"


@dataclass
class Producer:
    """Sends a plan from a background thread at `rate` messages/s (0 = as fast as possible).

    `sent` counts messages handed to the producer; after `join`, `poison_at` maps each poison
    message's index in the plan to its (partition, offset) and `errors` lists failed sends.
    """

    bootstrap: str
    topic: str
    plan: Plan
    rate: float
    sent: int = 0
    poison_at: dict[int, tuple[int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faults-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self.finished_at > 0

    def join(self, timeout_s: float = 600.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.errors.append(f"producer still sending after {timeout_s:.0f} s")

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
            reconnect_backoff_max_ms=1000,  # R3: reconnect soon after the broker is back
            delivery_timeout_ms=300_000,  # ... and keep retrying through a 30 s outage
            client_id="edgeml-faults-producer",
        )
        futures: list[tuple[int, Any]] = []
        self.started_at = time.time()
        try:
            for i, message in enumerate(self.plan.messages):
                if self.rate > 0:
                    delay = self.started_at + i / self.rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                future = producer.send(self.topic, value=message.encode(time.time()),
                                       key=message.key)  # fmt: skip
                if message.poison:
                    futures.append((i, future))
                future.add_errback(self._failed)
                self.sent += 1
            producer.flush()
            for i, future in futures:
                meta = future.get(timeout=300)
                self.poison_at[i] = (meta.partition, meta.offset)
        except Exception as exc:  # reported by the verdict, never a hung harness
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            producer.close()
            self.finished_at = time.time()

    def _failed(self, exc: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"send failed: {type(exc).__name__}: {exc}")
