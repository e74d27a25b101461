"""The Scorer: features → online anomaly detection → adaptive threshold → alerts → failure risk.

One `Scorer` per worker process holds what is shared (configuration, the ONNX failure model,
the online failure classifier); each device has a small `DeviceState` (windows, detector
baselines, threshold histogram, alert bookkeeping, a few label rows) that lives in the worker's
table and round-trips through `to_bytes`/`from_bytes` exactly (future scores are identical).

    scorer = Scorer(failure_model=load_promoted(root, threads))  # or Scorer(): online model only
    state = scorer.new_state("dev-0001")
    scored = scorer.score(state, readings)   # readings of one device, in arrival order
    many = scorer.score_many([(state_a, batch_a), (state_b, batch_b)])  # one ONNX call

Everything is event time: replaying a topic at full speed gives the same outputs as live.

Re-deliveries: each state records the highest `seq` applied (`DeviceState.seq`, with the
event time of that reading). A reading with a `seq` at or below it and an event time at or
before the device's watermark was applied before (Kafka re-delivers what follows the last
committed offset after a crash or rebalance): `score` returns it as `redelivered` without
learning from it or changing anything. A lower `seq` with a newer event time is a device
that restarted its counter: accepted, and the mark starts again from it. This assumes, as
producers here do, that a device's `seq` increases with its readings on its partition.

Failures stay with their device: `score_many` scores each device on its own, and a device
whose scoring raises gets a `DeviceFailure` (an empty result holding the exception) while
the others are scored and share the one failure-model call. Scores are always finite in
[0, 1]: a non-finite one raises (`ScoringFault`) rather than be learned or published.

The constructor does no I/O: the failure model is loaded by whoever builds the Scorer (the
worker's composition root, from its one `ModelRegistry`) and passed in. Model latency leaves
through the `on_model_call(ref, seconds)` hook: each failure-model call as that model's ref, and
the rest of each `score_many` call (features + online detectors) as the anomaly model's.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, cast

import numpy as np

from edgeml.models.alerting import AlertPolicy
from edgeml.models.calibration import CalibrationConfig, ScoreCalibrator
from edgeml.models.detectors import (
    EVIDENCE,
    AdaptiveThreshold,
    DetectorConfig,
    ResidualDetector,
    SharedHalfSpaceTrees,
)
from edgeml.models.failure import FailureInputs, OnlineFailureModel, failure_inputs
from edgeml.models.features import VALUE_LIMIT, FeatureConfig, FeatureExtractor, FeatureRow
from edgeml.models.registry import FAILURE_MODEL_ID
from edgeml.models.scored import DeviceFailure, ScoredReading, ScoringFault
from edgeml.models.seasonal import SeasonalConfig, SeasonalProfile
from edgeml.models.state import DeviceState
from edgeml.topics.records import AlertDriver, AnomalyAlert, MaintenanceEvent, SensorReading

if TYPE_CHECKING:
    from edgeml.models.kernel import KernelRunner

__all__ = [
    "FAILURE_MODEL_ID",
    "DeviceFailure",
    "DeviceState",
    "FailureModel",
    "ModelCallHook",
    "ScoredReading",
    "Scorer",
    "ScorerConfig",
    "ScoringFault",
]

ANOMALY_MODEL_REF = "residual-ensemble@2"  # 2: seasonal profiles and calibrated scores


class FailureModel(Protocol):
    """What the Scorer needs of an offline failure model (a registry `ModelHandle` fits)."""

    @property
    def ref(self) -> str: ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...


# Called with (model ref "id@version", seconds) after each timed model call (worker metrics).
ModelCallHook = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class ScorerConfig:
    """Everything tunable about scoring. Frozen; the defaults are the tuned values."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    seasonal: SeasonalConfig = field(default_factory=SeasonalConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    threshold_floor: float = 0.5
    threshold_ceiling: float = 0.8
    threshold_quantile: float = 0.999
    threshold_margin: float = 0.05
    threshold_refresh: int = 50
    failure_horizon_s: float = 300.0
    label_every_s: float = 30.0
    label_delay_s: float = 300.0
    online_weight_max: float = 0.5
    online_weight_failures: int = 20
    drivers: int = 3
    detector_mode: Literal["residual", "hst", "both"] = "residual"


class Scorer:
    """Scores readings per device; one per worker process. See the module docstring.

    `failure_model`: an object with `predict((n, k) float32) -> (n,)` and `ref`, usually the
    registry `ModelHandle` of the promoted `failure-gbm` (`ModelRegistry.promoted_handle`,
    `models.registry.load_promoted`); None scores failure risk with the online model only.
    `on_model_call`: the timing hook (module docstring); None times nothing.
    """

    def __init__(
        self,
        config: ScorerConfig | None = None,
        *,
        failure_model: FailureModel | None = None,
        keep_failure_rows: bool = False,
        on_model_call: ModelCallHook | None = None,
        kernel: Literal["compiled", "reference"] = "compiled",
    ) -> None:
        self.config = config or ScorerConfig()
        c = self.config
        self.extractor = FeatureExtractor(c.features)
        self.detector = ResidualDetector(c.detector)
        self.seasonal = SeasonalProfile(c.seasonal)
        self.calibrator = ScoreCalibrator(c.calibration)
        self.thresholds = AdaptiveThreshold(
            quantile=c.threshold_quantile,
            margin=c.threshold_margin,
            floor=c.threshold_floor,
            ceiling=c.threshold_ceiling,
            every=c.threshold_refresh,
        )
        self.alerts = c.alerts
        self.failure_model = failure_model
        self.on_model_call = on_model_call
        names = _model_inputs(failure_model) or failure_inputs()
        self.failure_inputs = FailureInputs(names, c.features)
        self.online = OnlineFailureModel(self.failure_inputs.names)
        # the `stack` aggregation's stacker learns from the same labelled rows (else None)
        sink = getattr(failure_model, "label_sink", None)
        self._label_sink: Callable[[np.ndarray, list[bool]], None] | None = (
            sink() if callable(sink) else None
        )
        self.keep_failure_rows = keep_failure_rows
        # labelled rows waiting to be learned, in label order (`_learn_labels`)
        self._labelled: list[list[float]] = []
        self._label_flags: list[bool] = []
        self._pending: dict[str, list[MaintenanceEvent]] = defaultdict(list)
        if c.detector_mode not in ("residual", "hst", "both"):
            raise ValueError(
                f"detector_mode must be 'residual', 'hst' or 'both', got {c.detector_mode!r}"
            )
        self.hst = SharedHalfSpaceTrees() if c.detector_mode != "residual" else None
        self._anomaly_ref = (
            ANOMALY_MODEL_REF if c.detector_mode == "residual" else f"{c.detector_mode}@river"
        )
        if kernel not in ("compiled", "reference"):
            raise ValueError(f"kernel must be 'compiled' or 'reference', got {kernel!r}")
        # the compiled core (models.kernel) scores what the reference below would, equal to
        # 1e-9; the shared HalfSpaceTrees (river objects) have no compiled form
        self._kernel: KernelRunner | None = None
        # a subclass that overrides a per-reading step (tests inject faults that way) is
        # honoured: the kernel has those steps compiled in, so such a scorer is the reference
        overridden = any(
            getattr(type(self), name) is not getattr(Scorer, name)
            for name in ("_score_device", "_score_one", "_after_silence", "_drivers")
        )
        if kernel == "compiled" and self.hst is None and not overridden:
            from edgeml.models.kernel import KernelRunner, warm

            self._kernel = KernelRunner(self)
            warm()  # compiled (or loaded from numba's cache) at worker start, once per process

    @property
    def kernel(self) -> Literal["compiled", "reference"]:
        """The scoring core this scorer actually runs (`compiled` may fall back, see above)."""
        return "compiled" if self._kernel is not None else "reference"

    @property
    def model_ids(self) -> dict[str, str]:
        """Role -> "model_id@version"; read per batch, so a hot-swapped model shows at once."""
        ids = {"anomaly": self._anomaly_ref}
        if self.failure_model is not None:
            ids["failure"] = self.failure_model.ref
        ids["failure_online"] = f"failure-online@{self.online.failures}"
        return ids

    # --- state ------------------------------------------------------------------------------
    def new_state(self, device_id: str) -> DeviceState:
        return DeviceState(device_id, self.thresholds.bins)

    def _after_silence(self, state: DeviceState, before: float) -> list[AnomalyAlert]:
        """Idle, per device and in its own event time: when the device's event time moves on by
        more than its idle span (`FeatureExtractor.idle_after`; a confirmed jump: one far-ahead
        reading alone is held, not trusted, `models.features`), the incident still open from
        before the silence resolves at the last event before it (`before`, the previous
        watermark); the windows restart.
        Baselines, profiles and the threshold are kept: they describe the device's normal,
        which survives a pause.

        Nothing else expires a device: the worker used to sweep devices against the newest event
        time of *any* device on the partition, on a wall-clock timer, so a device replaying older
        history was expired while still sending and alerts depended on wall-clock speed and on
        the other devices. A device that never sends again keeps its incident open (nothing in
        its event time says it ended)."""
        if not state.alert.open or not math.isfinite(before):
            return []
        if state.watermark - before <= self.extractor.idle_after(state.features):
            return []
        alert = self.alerts.close(state.alert, state.device_id, before, state.seq, 0.0)
        return [alert] if alert is not None else []

    # --- scoring ----------------------------------------------------------------------------
    def score(self, state: DeviceState, readings: Sequence[SensorReading]) -> list[ScoredReading]:
        """Score readings of ONE device in arrival order; mutates `state`. One result per
        reading, re-deliveries included (`redelivered`, nothing else set); raises on failure."""
        out: list[ScoredReading] = []
        fresh: list[ScoredReading] = []
        rows: list[list[float]] = []
        if self._kernel is not None:
            result = self._kernel.run([(state, readings)], fresh, rows)[0]
            if isinstance(result, Exception):
                raise result
            out = result
        else:
            self._score_device(state, readings, out, fresh, rows)
        self._fill_failure(fresh, rows, self._kernel.matrix if self._kernel else None)
        return out

    def score_many(
        self, batch: Sequence[tuple[DeviceState, Sequence[SensorReading]]]
    ) -> list[list[ScoredReading]]:
        """Score several devices' readings with ONE failure-model call for the whole batch.

        A device whose scoring raises gets a `DeviceFailure` (its state is then part-updated:
        the caller replaces it) and the others are scored normally."""
        results: list[list[ScoredReading]] = []
        on_call = self.on_model_call
        start = time.perf_counter() if on_call is not None else 0.0
        fresh: list[ScoredReading] = []
        rows: list[list[float]] = []
        if self._kernel is not None:
            for res in self._kernel.run(batch, fresh, rows):
                results.append(res if isinstance(res, list) else DeviceFailure(res))
            batch = ()  # scored: the reference loop below has nothing left
        for state, readings in batch:
            out: list[ScoredReading] = []
            done = len(fresh)
            try:
                self._score_device(state, readings, out, fresh, rows)
            except Exception as exc:  # bad data or a bug: this device only (module docstring)
                del fresh[done:], rows[done:]
                results.append(DeviceFailure(exc))
                continue
            results.append(out)
        failure_s = self._fill_failure(fresh, rows, self._kernel.matrix if self._kernel else None)
        if on_call is not None and results:
            on_call(self._anomaly_ref, max(time.perf_counter() - start - failure_s, 0.0))
        return results

    def _score_device(
        self,
        state: DeviceState,
        readings: Sequence[SensorReading],
        out: list[ScoredReading],
        fresh: list[ScoredReading],
        rows: list[list[float]],
    ) -> None:
        """Append every reading's result to `out`, and the newly scored ones (which need a
        failure probability) to `fresh` with their failure-model rows to `rows`."""
        pending = self._pending.pop(state.device_id, None) if self._pending else None
        if pending:
            for event in pending:
                self._apply_maintenance(state, event)
        for reading in readings:
            seq = reading.seq
            if seq <= state.seq:
                ts = reading.ts
                if ts <= state.features.watermark or (seq == state.seq and ts == state.seq_ts):
                    out.append(ScoredReading(reading, 0.0, 0.0, False, False, [], redelivered=True))
                    continue
                if not self.extractor.is_jump(state.features, ts):
                    state.seq, state.seq_ts = seq, ts  # the device restarted its counter
                # else a jump ahead with a lower seq: a re-delivered held reading, or a device
                # back from a silence with a new counter; scored, the mark waits for a reading
                # that is not a jump (the features hold this one: nothing is learned from it)
            else:
                state.seq, state.seq_ts = seq, reading.ts
            scored, row = self._score_one(state, reading)
            out.append(scored)
            if row is not None:  # the failure model applies: its probability comes next
                fresh.append(scored)
                rows.append(row)

    def _score_one(
        self, state: DeviceState, reading: SensorReading
    ) -> tuple[ScoredReading, list[float] | None]:
        before = state.watermark
        feats = self.extractor.update(state.features, reading)
        closed = [] if feats.held else self._after_silence(state, before)
        late = feats.late
        frozen = late or feats.held  # nothing is learned from a late or held reading
        det = self.detector
        detectors = state.detectors
        evidence: dict[str, float] = {}
        best = 0.0
        raw: list[tuple[float, float, float, float]] = []
        seasons = state.seasons
        seasonal = self.seasonal
        all_normal = True
        ts = reading.ts
        for name, vec in feats.metrics.items():  # the metrics the device's budget tracks
            x = vec[0]
            s = detectors.get(name)
            if s is None:
                s = det.new_metric_state(x)
                if not frozen:
                    if len(detectors) >= self.config.features.max_metrics:
                        self._forget_untracked(state)
                    detectors[name] = s
            sp = seasons.get(name)
            if sp is None:  # a new metric, or a state written before profiles existed
                sp = seasonal.new_state(ts, x)
                if not frozen:
                    seasons[name] = sp
            u = _clamp(x - seasonal.expected(sp, ts))  # the value less its daily profile
            ev = det.score_one(s, u, x)
            if self.hst is not None:
                raw.append(ev)
            e = max(ev)
            evidence[name] = e
            if e > best:
                best = e
            if not frozen:
                normal = det.learn_one(s, u, ev, x, ts)
                all_normal = all_normal and normal
                if seasonal.learn(sp, ts, x, normal=normal):  # the profile is established
                    det.rebase(s, _clamp(x - seasonal.expected(sp, ts)), seasonal.residual_var(sp))
        score = self.calibrator.score(state.calib, best)
        # the device's distribution learns the readings its detectors learned: 0.0 exactly is
        # every detector still warming up, and a held reading is an incident (bounded by
        # `relearn_after`): learning those made a first incident's evidence the spread that
        # hid the next (water-flow's pumping peak scored 0.39; simulator recall 0.69)
        if not frozen and best > 0.0 and all_normal:
            self.calibrator.learn(state.calib, best)
        if self.hst is not None:
            hx = self.hst.inputs(raw)
            h = self.hst.score_one(hx)
            score = h if self.config.detector_mode == "hst" else max(score, h)
            if not frozen and score <= self.thresholds.threshold(state.threshold):
                self.hst.learn_one(hx)
        if not 0.0 <= score <= 1.0:  # NaN too: nothing below may learn or publish it
            raise ScoringFault(f"score {score!r} for seq {reading.seq} is outside [0, 1]")
        threshold = self.thresholds.threshold(state.threshold)
        is_anomaly = score > threshold
        alerts: list[AnomalyAlert] = closed
        if not frozen:
            state.n += 1
            if not is_anomaly and not state.alert.open:
                self.thresholds.learn_one(state.threshold, score, state.n)
            alert = self.alerts.update(
                state.alert,
                device_id=reading.device_id,
                ts=reading.ts,
                seq=reading.seq,
                score=score,
                threshold=threshold,
                is_anomaly=is_anomaly,
                drivers=lambda: self._drivers(state, feats),
                site=reading.site,
                sent_at=reading.sent_at,
            )
            if alert is not None:
                alerts.append(alert)
        missing = self.failure_inputs.missing(feats)
        row = None if missing else self.failure_inputs.row(feats, detectors, evidence, score)
        if row is not None and not frozen:
            self._buffer_row(state, reading.ts, row)
        scored = ScoredReading(
            reading=reading,
            anomaly_score=score,
            failure_prob=None if missing else 0.0,
            failure_reason=f"no {', '.join(missing)} in the reading" if missing else None,
            is_anomaly=is_anomaly,
            late=late,
            alerts=alerts,
            threshold=threshold,
            failure_row=row if self.keep_failure_rows else None,
        )
        return scored, row

    @staticmethod
    def _forget_untracked(state: DeviceState) -> None:
        """Drop detector baselines of metrics the windows no longer track (metric churn)."""
        tracked = state.features.metrics
        for name in [n for n in state.detectors if n not in tracked]:
            del state.detectors[name]
            state.seasons.pop(name, None)

    def _drivers(self, state: DeviceState, feats: FeatureRow) -> tuple[AlertDriver, ...]:
        """The metrics with the largest evidence, named by the detector that fired."""
        ranked: list[tuple[float, str, str, float]] = []
        for name, vec in feats.metrics.items():
            s = state.detectors.get(name)
            if s is None:
                continue
            sp = state.seasons.get(name)
            x = vec[0]
            u = _clamp(x - self.seasonal.expected(sp, feats.ts)) if sp is not None else x
            ev = self.detector.score_one(s, u, x)
            k = max(range(len(ev)), key=ev.__getitem__)
            ranked.append((ev[k], name, EVIDENCE[k], vec[0]))
        ranked.sort(reverse=True)
        return tuple(
            AlertDriver(metric=m, feature=f, value=v, zscore=round(z, 3))
            for z, m, f, v in ranked[: self.config.drivers]
        )

    def _fill_failure(
        self, out: list[ScoredReading], rows: list[list[float]], matrix: np.ndarray | None = None
    ) -> float:
        """Set each reading's failure probability; returns the seconds the failure-model call
        took when it was timed (`on_model_call`), else 0.0. `matrix`: the same rows as one
        float64 array (the kernel's), converted without going through Python lists."""
        self._flush_labels()  # labels aged out in this call first, as if learned at once
        if not out:
            return 0.0
        # an (n, k) array is a sequence of rows to `matrix` (np.asarray), typed or not
        x = self.failure_inputs.matrix(rows if matrix is None else cast(list[list[float]], matrix))
        prob = np.zeros(len(out))
        offline_w = 0.0
        failure_s = 0.0
        model = self.failure_model
        if model is not None:
            on_call = self.on_model_call
            if on_call is None:
                prob = np.asarray(model.predict(x), dtype=np.float64)
            else:
                ref = model.ref  # the version this call runs on (swaps happen between batches)
                start = time.perf_counter()
                try:
                    prob = np.asarray(model.predict(x), dtype=np.float64)
                finally:
                    failure_s = time.perf_counter() - start
                    on_call(ref, failure_s)
            offline_w = 1.0
        if self.online.ready:
            c = self.config
            w = min(c.online_weight_max, self.online.failures / c.online_weight_failures)
            if offline_w == 0.0:
                w = 1.0
            if w > 0.0:
                prob = (1.0 - w) * prob + w * self.online.predict(x.astype(np.float64))
        # a probability, whatever a model returns (NaN -> 0, out of range clipped)
        prob = np.clip(np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        for scored, p in zip(out, prob.tolist(), strict=True):
            scored.failure_prob = p
        return failure_s

    # --- delayed labels ---------------------------------------------------------------------
    def _buffer_row(self, state: DeviceState, ts: float, row: list[float]) -> None:
        c = self.config
        if ts - state.last_row_ts < c.label_every_s:
            return
        state.last_row_ts = ts
        state.rows.append([ts, *array("f", row).tolist()])  # float32: small state, exact
        keep_after = ts - c.failure_horizon_s - c.label_delay_s
        if state.rows[0][0] < keep_after:
            old = [r for r in state.rows if r[0] < keep_after]
            state.rows = [r for r in state.rows if r[0] >= keep_after]
            self._learn_labels([r[1:] for r in old], [False] * len(old))

    def learn_maintenance(self, event: MaintenanceEvent, state: DeviceState | None = None) -> None:
        """Learn from a maintenance event. With the device's `state` it applies now; without,
        it is queued and applied at that device's next `score` call."""
        if state is None:
            self._pending[event.device_id].append(event)
            return
        self._apply_maintenance(state, event)
        self._flush_labels()

    def _apply_maintenance(self, state: DeviceState, event: MaintenanceEvent) -> None:
        if event.kind == "repair":
            for s in state.detectors.values():
                self.detector.restart(s)
            return
        if event.kind != "failure":
            return
        horizon_start = event.ts - self.config.failure_horizon_s
        rows = [r for r in state.rows if r[0] < event.ts]
        labels = [r[0] >= horizon_start for r in rows]
        if rows:
            self._learn_labels([r[1:] for r in rows], labels)
        self.online.failures += 1
        state.rows = [r for r in state.rows if r[0] >= event.ts]

    def _learn_labels(self, rows: list[list[float]], labels: list[bool]) -> None:
        """Queue labelled canonical rows (the label buffer's); `_flush_labels` learns them.
        Rows age out a few at a time per device, and one learning call per batch instead of
        one per aged row saves the matrix, snapshot and stacker call of each (~1 µs a reading
        batched, docs/benchmarks.md). Whatever reads the online model flushes first."""
        self._labelled.extend(rows)
        self._label_flags.extend(labels)

    def _flush_labels(self) -> None:
        """Learn the queued labels, in order, as `_fill_failure` predicts on rows: clipped, in
        the model's input order (learning the canonical order under the manifest's names
        mislearned any model whose inputs are not in canonical order)."""
        if not self._labelled:
            return
        rows, labels = self._labelled, self._label_flags
        self._labelled, self._label_flags = [], []
        x = self.failure_inputs.matrix(rows)
        self.online.learn_many(x.astype(np.float64).tolist(), labels)
        if self._label_sink is not None:
            self._label_sink(x, labels)


def _clamp(x: float) -> float:
    return x if -VALUE_LIMIT <= x <= VALUE_LIMIT else (VALUE_LIMIT if x > 0 else -VALUE_LIMIT)


def _model_inputs(model: FailureModel | None) -> tuple[str, ...] | None:
    current = getattr(model, "current", None)
    manifest = getattr(current, "manifest", None) or getattr(model, "manifest", None)
    inputs = getattr(manifest, "inputs", None)
    return tuple(inputs) if inputs else None
