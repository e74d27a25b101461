"""One batch of raw input messages in, every output record out: the worker's per-batch logic.

Faust-free so the edge agent runs the same code. The worker hands a batch of messages (from
`stream.take_events`) and a `StateStore` over its device-state table; `ReadingPipeline.process`
validates, scores each device's readings in arrival order, and returns what to publish:

- one `predictions` record per input message that had a valid reading: a single prediction for
  a single reading, `{"predictions": [...]}` for a batch envelope (same order as its readings);
- one `anomaly-alerts` record per alert lifecycle event;
- one dead letter per rejected reading (or whole message), with origin and reason in headers;
- a copy of every late reading on the late topic (it is still scored, marked `late`).

Only the publisher reads those `Outbound` records. What observers (metrics, analytics) need is
in `BatchResult` as facts the pipeline knew when it made the records: each scored reading's
origin message, the alert events as `AnomalyAlert` records (as sent, `scored_at` set) and each
dead letter's origin message and error class (`Rejected`). Before, analytics rebuilt origins
by counting `"device_id":` in the prediction bytes and parsed partitions out of dead-letter
headers, and metrics parsed every alert's JSON again: two steps coupled to another's byte
format, one of them raising when the output order changed.

Re-deliveries and duplicates: a device's state records the highest `seq` applied
(`models.scoring`). A reading at or below it, not newer than the device's watermark, was
applied before: it is not learned, counted, marked late or copied to the late topic, and
its prediction is *suppressed* (counted in `BatchResult.redelivered`). Suppressing is
right because the worker publishes a batch's outputs before its state writes can reach the
table (agents.score, agents.writeback): a seq in the state means its prediction went out.
A message whose readings are all re-deliveries yields no record; an envelope with some
yields a `{"predictions": [...]}` of the others. Copies of one (device, seq) in a batch are
deduplicated the same way (the first is scored). A lower `seq` with a newer event time is a
device that restarted its counter: scored, and the mark restarts from it.

When the failure model is the inference engine's (`models.inference.EngineFailureModel`),
each prediction's `models` also records which backends the batch's call went to, with outcome
and milliseconds (`failure_backends`), and when no backend answered (every one failed, timed
out or has its breaker open) the readings it would have scored go out with `failure_prob`
null and the engine's reason as `failure_reason`: a prediction per reading still, never a
stall and never a made-up 0.0.

No input stops the batch: validation never raises (`models.validation`); a device whose
scoring raises has its readings of the batch dead-lettered (`ScoringError`, the exception
text as reason) and a fresh state saved in place of its part-updated one (keeping the seq
mark and newest event time of those readings, so their re-delivery is still recognised),
counted in `scoring_errors`; a state that does not load (corrupt bytes) is replaced by a
fresh one and counted in `state_errors`. The rest of the batch is scored as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import orjson

from edgeml.models.manifest import ModelAnnouncement
from edgeml.models.registry import ModelHandle, ModelRegistry
from edgeml.models.scoring import DeviceFailure, DeviceState, ScoredReading, Scorer
from edgeml.models.validation import (
    ParsedMessage,
    Rejection,
    ValidationLimits,
    parse_maintenance,
    parse_message,
)
from edgeml.topics.records import AnomalyAlert, DeadLetter, SensorReading

__all__ = [
    "BatchResult",
    "Inbound",
    "Outbound",
    "ReadingPipeline",
    "Rejected",
    "Role",
    "StateStore",
    "prediction_wire",
]

Role = Literal["predictions", "alerts", "dlq", "late"]


@dataclass(slots=True, frozen=True)
class Inbound:
    """One raw input message and where it came from."""

    key: bytes | None
    value: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(slots=True, frozen=True)
class Outbound:
    """One record to publish; `role` names the output topic."""

    role: Role
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


@dataclass(slots=True, frozen=True)
class Rejected:
    """One dead letter, as observers see it. `origin` is the index of the batch message it
    came from (the dead letter has that message's key and partition); `index` its position in
    a batch envelope (None: the whole message was rejected)."""

    origin: int
    error_class: str
    reason: str
    index: int | None = None


class StateStore(Protocol):
    """Per-device state storage. `origin` is the index of the batch message that carried the
    device's readings, so a partitioned store can write to that message's partition."""

    def load(self, device_id: str, origin: int) -> DeviceState | None: ...

    def save(self, device_id: str, state: DeviceState, origin: int) -> None: ...


@dataclass(slots=True)
class BatchResult:
    """What one batch produced: the records to publish (`outbound`, for the publisher only)
    and, for observers, the facts behind them and counts for metrics.

    `scored` and the `predictions` records hold the newly scored readings only, in message
    order (re-deliveries and dead-lettered readings are in neither); `readings` counts them.
    `origins[i]` is the index of the batch message `scored[i]` came from. `alert_events` are
    the alert records published (with the batch's `scored_at`), `alerts` counts them.
    `rejections` are the dead letters, `ScoringError` ones included; `dead_letters` counts
    them. `scoring_errors` counts the devices whose scoring raised, `state_errors` the states
    that failed to load."""

    outbound: list[Outbound] = field(default_factory=list)
    scored: list[ScoredReading] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)
    alert_events: list[AnomalyAlert] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)
    readings: int = 0
    dead_letters: int = 0
    late: int = 0
    alerts: int = 0
    redelivered: int = 0
    scoring_errors: int = 0
    state_errors: int = 0


class ReadingPipeline:
    """Validates and scores batches of raw messages. Created once per worker with its `Scorer`."""

    def __init__(
        self,
        scorer: Scorer,
        limits: ValidationLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scorer = scorer
        self.limits = limits or ValidationLimits()
        self._clock = clock  # `scored_at` only: no decision depends on wall-clock time

    def process(self, batch: Sequence[Inbound], store: StateStore) -> BatchResult:
        result = BatchResult()
        now = self._clock()
        # Per message: its readings' slots (filled after scoring; None: dead-lettered).
        parsed_messages: list[ParsedMessage] = []
        slots: list[list[ScoredReading | None]] = []
        by_device: dict[str, tuple[int, list[tuple[int, int, SensorReading]]]] = {}
        for index, message in enumerate(batch):
            parsed = parse_message(message.value, now, self.limits)
            parsed_messages.append(parsed)
            for rejection in parsed.rejections:
                _reject(result, message, index, rejection)
            slots.append([None] * len(parsed.readings))
            for position, reading in enumerate(parsed.readings):
                entry = by_device.get(reading.device_id)
                if entry is None:
                    entry = by_device[reading.device_id] = (index, [])
                entry[1].append((index, position, reading))
        devices = list(by_device.items())
        states = [self._load(store, d, origin, result) for d, (origin, _) in devices]
        work = [
            (state, [r for _, _, r in items])
            for state, (_, (_, items)) in zip(states, devices, strict=True)
        ]
        outcomes = self.scorer.score_many(work)
        answer = _take_answer(self.scorer)
        for state, (device_id, (origin, items)), scored in zip(
            states, devices, outcomes, strict=True
        ):
            if isinstance(scored, DeviceFailure):
                state = self._quarantine(device_id, items)
                result.scoring_errors += 1
                for index, position, _ in items:
                    rejection = _scoring_rejection(parsed_messages[index], position, scored)
                    _reject(result, batch[index], index, rejection)
            else:
                for (index, position, _), done in zip(items, scored, strict=True):
                    slots[index][position] = done
            store.save(device_id, state, origin)
        scored_at = self._clock()
        model_ids = self.scorer.model_ids
        down: str | None = None
        if answer is not None:  # the failure task ran on the inference engine (module docstring)
            model_ids["failure_backends"], down = answer
        for index, message_slots in enumerate(slots):
            predictions = []
            for outcome in message_slots:
                if outcome is None:
                    continue  # its device failed: dead-lettered above
                if outcome.redelivered:
                    result.redelivered += 1
                    continue
                if down is not None and outcome.failure_prob is not None:
                    outcome.failure_prob, outcome.failure_reason = None, down
                result.scored.append(outcome)
                result.origins.append(index)
                predictions.append(prediction_wire(outcome, model_ids, scored_at))
                if outcome.alerts:  # most readings raise none: no call for them
                    _emit_alerts(result, outcome.alerts, scored_at)
                if outcome.late:
                    result.late += 1
                    result.outbound.append(
                        Outbound("late", batch[index].key, orjson.dumps(outcome.reading.to_wire()))
                    )
            if not predictions:
                continue
            value = (
                {"predictions": predictions} if parsed_messages[index].batched else predictions[0]
            )
            result.outbound.append(Outbound("predictions", batch[index].key, orjson.dumps(value)))
            result.readings += len(predictions)
        return result

    def _load(
        self, store: StateStore, device_id: str, origin: int, result: BatchResult
    ) -> DeviceState:
        """The device's state, or a fresh one when it has none or it does not load."""
        try:
            state = store.load(device_id, origin)
        except Exception:  # corrupt bytes, or a format this code cannot read: start afresh
            result.state_errors += 1
            state = None
        return state if state is not None else self.scorer.new_state(device_id)

    def _quarantine(
        self, device_id: str, items: list[tuple[int, int, SensorReading]]
    ) -> DeviceState:
        """A fresh state for a device whose scoring raised, keeping the seq mark and the
        newest event time of its dead-lettered readings (so their re-delivery is recognised)."""
        fresh = self.scorer.new_state(device_id)
        newest = max(items, key=lambda item: item[2].seq)[2]
        fresh.seq, fresh.seq_ts = newest.seq, newest.ts
        fresh.features.watermark = max(reading.ts for _, _, reading in items)
        return fresh

    def apply_model_announcement(self, raw: bytes, registry: ModelRegistry) -> str | None:
        """Serve the version announced on `model-registry` when it is this worker's failure
        model; returns the new "id@version", or None when nothing changed.

        Called between batches, so a batch is scored by one version from start to end. A bad
        announcement (unknown version, tampered artifact) raises and the old model stays.
        """
        handle = self.scorer.failure_model
        if handle is None:
            return None
        if isinstance(handle, ModelHandle):
            changed = registry.apply(ModelAnnouncement.from_bytes(raw), handle)
        elif callable(apply := getattr(handle, "apply", None)):  # inference.EngineFailureModel
            changed = apply(ModelAnnouncement.from_bytes(raw), registry)
        else:
            return None
        return handle.ref if changed else None

    def learn_maintenance(self, message: Inbound, store: StateStore) -> list[Outbound]:
        """Feed one `maintenance-events` message to the online failure model; a malformed one
        is dead-lettered. The device's state is updated in place when this worker holds it."""
        event = parse_maintenance(message.value, self._clock(), self.limits)
        if isinstance(event, Rejection):
            return [_dead_letter(message, event)]
        try:
            state = store.load(event.device_id, 0)
        except Exception:  # a state that does not load: the event waits for the next batch
            state = None
        try:
            self.scorer.learn_maintenance(event, state)
        except Exception as exc:  # this event only (a poisoned state); the label is lost
            return [_dead_letter(message, Rejection("ScoringError", _error_text(exc)))]
        if state is not None:
            store.save(event.device_id, state, 0)
        return []


def _take_answer(scorer: Scorer) -> tuple[str, str | None] | None:
    """The failure model's record of this batch's call when it is the inference engine's
    (`models.inference.adapter.EngineFailureModel.take_answer`): the backends called and how
    long each took, and the reason when none answered; None for any other model."""
    take = getattr(scorer.failure_model, "take_answer", None)
    return take() if callable(take) else None


def _dead_letter(message: Inbound, rejection: Rejection) -> Outbound:
    letter = DeadLetter(
        original=rejection.original if rejection.original is not None else (message.value or b""),
        error_class=rejection.error_class,
        reason=rejection.reason,
        origin_topic=message.topic,
        origin_partition=message.partition,
        origin_offset=message.offset,
        key=message.key,
        extra={} if rejection.index is None else {"batch.index": str(rejection.index)},
    )
    return Outbound("dlq", message.key, letter.original, letter.headers())


def _reject(result: BatchResult, message: Inbound, origin: int, rejection: Rejection) -> None:
    """Dead-letter `rejection` of batch message `origin`: the record and its facts together."""
    result.outbound.append(_dead_letter(message, rejection))
    result.rejections.append(
        Rejected(origin, rejection.error_class, rejection.reason, rejection.index)
    )
    result.dead_letters += 1


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _scoring_rejection(parsed: ParsedMessage, position: int, failure: DeviceFailure) -> Rejection:
    """The `ScoringError` rejection of one reading of a device whose scoring raised."""
    reason = _error_text(failure.error)
    if not parsed.batched:
        return Rejection("ScoringError", reason)
    reading = parsed.readings[position]
    original = orjson.dumps(reading.to_wire())
    return Rejection("ScoringError", reason, parsed.indices[position], original)


def _emit_alerts(result: BatchResult, alerts: list[AnomalyAlert], scored_at: float) -> None:
    for alert in alerts:
        sent = replace(alert, scored_at=scored_at)  # the record observers get is the one sent
        result.alert_events.append(sent)
        result.outbound.append(
            Outbound("alerts", sent.device_id.encode(), orjson.dumps(sent.to_wire()))
        )
        result.alerts += 1


def prediction_wire(
    outcome: ScoredReading, model_ids: dict[str, str], scored_at: float
) -> dict[str, object]:
    """One scored reading as its `Prediction` wire dict: the worker's and the edge agent's.

    Built as the dict itself, in `Prediction.to_wire`'s key order (the same bytes; a unit test
    holds them equal), not as a `Prediction` first: measured with `python -m bench.decode`,
    the record plus `to_wire` cost about 3 µs of the 4 µs a single prediction took to encode."""
    reading = outcome.reading
    if outcome.failure_prob is None:  # only the models that scored this reading are named
        model_ids = {role: ref for role, ref in model_ids.items() if role == "anomaly"}
    return {
        "device_id": reading.device_id,
        "ts": reading.ts,
        "seq": reading.seq,
        "anomaly_score": outcome.anomaly_score,
        "failure_prob": outcome.failure_prob,
        "models": model_ids,
        "late": outcome.late,
        "is_anomaly": outcome.is_anomaly,
        "sent_at": reading.sent_at,
        "scored_at": scored_at,
        "threshold": outcome.threshold,
        "failure_reason": outcome.failure_reason,
    }
