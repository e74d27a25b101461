"""`KernelRunner`: a batch of (DeviceState, readings) through `run_batch` and back.

Per batch: each device's state is packed into the flat arrays of `models.kernel.layout`
(`pack`: list extends and one `np.array` per array: C speed, no per-reading objects), the whole
batch is scored in one compiled call, and the states are written back into the same
`DeviceState` objects (`outputs`), so the EDS3 codec, the worker's table and recovery see
exactly what the reference would have left. What needs names and objects (alert ids and
drivers, `ScoredReading`s, the failure model's label buffer) is rebuilt from the kernel's
per-reading outputs (`outputs`).

A device goes to the reference instead (`Scorer._score_device`, identical results by
construction) when its batch needs something the arrays do not hold: queued maintenance (it
trains the shared online model, whose order must not change), more metrics than the budget,
a state of another shape; or when the kernel flags it (a state or input the reference
refuses: it then raises the real error from the untouched state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgeml.models.detectors import winsor_bias
from edgeml.models.kernel import layout as L
from edgeml.models.kernel.outputs import LAZY_ROW
from edgeml.models.kernel.pack import Pack
from edgeml.models.scored import ScoredReading
from edgeml.topics.records import SensorReading

if TYPE_CHECKING:
    from edgeml.models.scoring import Scorer
    from edgeml.models.state import DeviceState

__all__ = ["KernelRunner"]

MIN_READINGS = 3  # see KernelRunner.min_readings


def parameters(scorer: Scorer) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's configuration as the kernel's parameter vector and window plan."""
    c = scorer.config
    fc, dc, sc, cc, ac = c.features, c.detector, c.seasonal, c.calibration, c.alerts
    th = scorer.thresholds
    fi = scorer.failure_inputs
    p = np.zeros(L.PW)
    values = {
        L.P_GRACE: fc.grace_s, L.P_IDLE: fc.idle_timeout_s, L.P_JUMP: fc.jump_gaps,
        L.P_IDLEG: fc.idle_gaps,
        L.P_WARM: dc.warmup, L.P_SWARM: max(dc.slow_warmup, dc.warmup),
        L.P_VFR: dc.var_floor_rel, L.P_RESF: dc.resolution_floor,
        L.P_W0: dc.weights[0], L.P_W1: dc.weights[1], L.P_W2: dc.weights[2],
        L.P_W3: dc.weights[3], L.P_AE: dc.alpha_energy, L.P_P0F: dc.p0_floor,
        L.P_AF: dc.alpha_fast, L.P_AS: dc.alpha_slow, L.P_AV: dc.alpha_var,
        L.P_AVS: dc.alpha_var_slow, L.P_AP: dc.alpha_p0, L.P_KF: winsor_bias(3.0),
        L.P_KS: winsor_bias(dc.winsor_var), L.P_GUARD: dc.guard_z,
        L.P_RELN: dc.relearn_after, L.P_RELS: dc.relearn_after_s,
        L.P_RECN: dc.recentre_after, L.P_FLAT: dc.flat_p0, L.P_WVAR: dc.winsor_var,
        L.P_WMEAN: dc.winsor_mean,
        L.P_EST: sc.establish_s, L.P_ALLOC: sc.allocate_s, L.P_EXPL: sc.explain,
        L.P_BALPHA: sc.bin_alpha, L.P_STAU: sc.stats_tau_s, L.P_MINP: sc.min_pairs,
        L.P_CWARM: cc.warmup, L.P_CVF: cc.var_floor, L.P_CL0: cc.nines_at_half,
        L.P_CWIN: cc.winsor, L.P_CALPHA: scorer.calibrator._alpha,
        L.P_BINS: th.bins, L.P_Q: th.quantile, L.P_MARGIN: th.margin, L.P_FLOOR: th.floor,
        L.P_CEIL: th.ceiling, L.P_EVERY: th.every, L.P_KEEP: th.keep, L.P_MINC: th.min_count,
        L.P_OPENA: ac.open_after, L.P_RESN: ac.resolve_after_readings,
        L.P_RESS: ac.resolve_after_s, L.P_REL: ac.release, L.P_WARN: ac.warning_at,
        L.P_CRIT: ac.critical_at,
        L.P_SPAN60: fi._span60, L.P_I10: fi._mean10, L.P_I60: fi._mean60,
        L.P_S10: fi._std10, L.P_S60: fi._std60, L.P_SL: fi._slope60,
    }  # fmt: skip
    for i, v in values.items():
        p[i] = float(v)
    plan = np.array([list(step) for step in scorer.extractor._plan], dtype=np.float64)
    return p, plan


class KernelRunner:
    """Scores batches with the compiled kernel for one `Scorer` (its config and side models)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.p, self.plan = parameters(scorer)
        self.k = len(self.plan)
        self.width = scorer.extractor.width
        self.bins = scorer.thresholds.bins
        self.max_metrics = scorer.config.features.max_metrics
        self.fmetrics = scorer.failure_inputs.metrics
        self.row_width = 7 * len(self.fmetrics) + 1
        self._drivers = scorer.config.drivers
        # a device with fewer readings in the batch goes to the reference: packing and unpacking
        # its state costs more than the kernel saves on so few (bench.steps, docs/benchmarks.md)
        self.min_readings = MIN_READINGS
        # devices scored by the kernel / handed to the reference (tests and metrics read them)
        self.compiled_devices = 0
        self.reference_devices = 0
        # after `run`: the failure-model input rows as one array, when all are the kernel's
        self.matrix: np.ndarray | None = None

    def run(
        self,
        batch: Sequence[tuple[DeviceState, Sequence[SensorReading]]],
        fresh: list[ScoredReading],
        rows: list[list[float]],
    ) -> list[list[ScoredReading] | Exception]:
        """One result per device: its scored readings, or the exception its scoring raised."""
        scorer = self.scorer
        try:
            packed: Pack | None = Pack(self, batch)
        except (TypeError, ValueError, OverflowError):
            # a value the arrays cannot hold (a seq past int64, a non-number given in-process):
            # the whole batch goes to the reference, which fails only the devices concerned
            packed = None
        # nothing for the kernel (every device to the reference): no arrays, no call
        out = packed.score() if packed is not None and packed.devices else None
        results: list[list[ScoredReading] | Exception] = []
        self.matrix = None
        row_ids: list[int] = []  # which kernel row each entry of `rows` is (-1: not one)
        for d, (state, readings) in enumerate(batch):
            done = len(fresh)
            k = packed.kernel_index[d] if packed is not None else -1
            try:
                if out is None or k < 0 or out.failed(k):
                    self.reference_devices += 1
                    scored: list[ScoredReading] = []
                    scorer._score_device(state, readings, scored, fresh, rows)
                    row_ids.extend([-1] * (len(rows) - done))
                else:
                    self.compiled_devices += 1
                    scored = out.finish(k, state, readings, fresh, rows, row_ids)
            except Exception as exc:  # this device only (models.scoring)
                del fresh[done:], rows[done:], row_ids[done:]
                results.append(exc)
                continue
            results.append(scored)
        if out is not None and row_ids:
            if min(row_ids) >= 0:
                # every failure-model row is the kernel's: the matrix straight from its array
                # (a list of lists to float32 cost ~2.5 µs per row, 10% of a batched reading)
                self.matrix = out.o_row[row_ids]
            else:  # mixed with the reference's rows: the kernel's as lists too
                o_row = out.o_row
                for i, r in enumerate(row_ids):
                    if rows[i] is LAZY_ROW:
                        rows[i] = o_row[r].tolist()
        return results
