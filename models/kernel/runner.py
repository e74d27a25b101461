"""`KernelRunner`: a batch of (DeviceState, readings) through `run_batch` and back.

Per batch: each device's state is packed into the flat arrays of `models.kernel.layout`
(list extends and one `np.array` per array: C speed, no per-reading objects), the whole batch
is scored in one compiled call, and the states are written back into the same `DeviceState`
objects, so the EDS3 codec, the worker's table and recovery see exactly what the reference
would have left. What needs names and objects (alert ids and drivers, `ScoredReading`s, the
failure model's label buffer) is rebuilt from the kernel's per-reading outputs.

A device goes to the reference instead (`Scorer._score_device`, identical results by
construction) when its batch needs something the arrays do not hold: queued maintenance (it
trains the shared online model, whose order must not change), more metrics than the budget,
a state of another shape; or when the kernel flags it (a state or input the reference
refuses: it then raises the real error from the untouched state).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from itertools import accumulate, chain
from typing import TYPE_CHECKING

import numpy as np

from edgeml.models.alerting import AlertState, Severity
from edgeml.models.detectors import EVIDENCE, winsor_bias
from edgeml.models.features import MetricWindows
from edgeml.models.kernel import layout as L
from edgeml.models.kernel.batch import run_batch
from edgeml.models.scored import ScoredReading
from edgeml.topics.records import AlertDriver, AnomalyAlert, SensorReading

if TYPE_CHECKING:
    from edgeml.models.scoring import Scorer
    from edgeml.models.state import DeviceState

__all__ = ["KernelRunner"]

_RANK = {"info": 0.0, "warning": 1.0, "critical": 2.0}
_SEVERITY: tuple[Severity, Severity, Severity] = ("info", "warning", "critical")
_ZEROS = [0.0] * L.SEASON_WIDTH
MIN_READINGS = 3  # see KernelRunner.min_readings


def _f64(values: list[float]) -> np.ndarray:
    """A writable float64 array over `array('d', values)`: 3-4x faster than `np.array` on a
    list (no per-element type discovery)."""
    return np.frombuffer(array("d", values), dtype=np.float64)


def _i64(values: list[int]) -> np.ndarray:
    return np.frombuffer(array("q", values), dtype=np.int64)


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
            packed: _Pack | None = _Pack(self, batch)
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
        if out is not None and row_ids and min(row_ids) >= 0:
            # every failure-model row is the kernel's: the matrix straight from its array
            # (a list of lists to float32 cost ~2.5 µs per row, 10% of a batched reading)
            self.matrix = out.o_row[row_ids]
        return results


class _Pack:
    """The batch's states and readings as flat arrays (`models.kernel.layout`)."""

    def __init__(
        self, runner: KernelRunner, batch: Sequence[tuple[DeviceState, Sequence[SensorReading]]]
    ) -> None:
        self.runner = runner
        r = runner
        scorer = r.scorer
        pending = scorer._pending
        self.kernel_index: list[int] = []
        self.devices: list[tuple[DeviceState, Sequence[SensorReading], list[str], int, int]] = []
        dev: list[float] = []
        devi: list[int] = []
        th: list[float] = []
        s_off = [0]
        sl: list[float] = []
        sli: list[int] = []
        start: list[int] = []
        mom: list[float] = []
        ew: list[float] = []
        det: list[float] = []
        sea: list[float] = []
        bt: list[float] = []
        bv: list[float] = []
        r_off = [0]
        rts: list[float] = []
        rseq: list[int] = []
        e_off = [0]
        e_slot: list[int] = []
        e_val: list[float] = []
        fm_slot: list[int] = []
        k = r.k
        nbins = r.bins + 1
        for state, readings in batch:
            f = state.features
            if (
                len(readings) < r.min_readings
                or (pending and state.device_id in pending)
                or len(state.threshold) != nbins
                or (state.alert.severity not in _RANK)
            ):
                self.kernel_index.append(-1)
                continue
            index = {name: i for i, name in enumerate(f.metrics)}
            for name in state.detectors:
                index.setdefault(name, len(index))
            for name in state.seasons:
                index.setdefault(name, len(index))
            base = s_off[-1]
            ne, nr = len(e_val), len(rts)
            rts.extend([reading.ts for reading in readings])
            rseq.extend([reading.seq for reading in readings])
            mets = [reading.metrics for reading in readings]
            where = {name: base + i for name, i in index.items()}
            try:  # the usual case: every metric already has a slot (map and chain: C speed)
                e_slot.extend(map(where.__getitem__, chain.from_iterable(mets)))
            except KeyError:  # a new metric: slots in order of first appearance
                del e_slot[ne:]
                for name in chain.from_iterable(mets):
                    i = index.get(name)
                    if i is None:
                        i = index[name] = len(index)
                    e_slot.append(base + i)
            e_val.extend(chain.from_iterable([m.values() for m in mets]))
            e_off.extend(accumulate(map(len, mets), initial=ne))
            del e_off[nr + 1]  # accumulate repeats the start
            names = list(index)
            if len(names) > r.max_metrics or not self._slots(
                state, names, len(readings), k, sl, sli, start, mom, ew, det, sea, bt, bv
            ):
                del rts[nr:], rseq[nr:], e_slot[ne:], e_val[ne:], e_off[nr + 1 :]
                self.kernel_index.append(-1)
                continue
            self.kernel_index.append(len(self.devices))
            self.devices.append((state, readings, names, base, nr))
            s_off.append(base + len(names))
            r_off.append(len(rts))
            a = state.alert
            dev.extend((f.watermark, float(f.readings), f.gap, f.ahead,
                        1.0 if f.ahead_reset else 0.0, float(state.n), state.seq_ts, *state.calib,
                        1.0 if a.open else 0.0, a.opened_ts, _RANK[a.severity], a.peak_score,
                        a.threshold, float(a.normal_run), float(a.abnormal_run), a.last_abnormal_ts,
                        float(a.incidents), float(len(f.metrics)), float(len(state.detectors)),
                        float(len(state.seasons)), 0.0))  # fmt: skip
            devi.extend((state.seq, a.opened_seq))
            th.extend(state.threshold)
            for m in r.fmetrics:
                i = index.get(m)
                fm_slot.append(-1 if i is None else base + i)
        nd = len(self.devices)
        ns = s_off[-1]
        if not nd:
            return
        self.arrays = (
            _f64(dev).reshape(nd, L.DW),
            _i64(devi).reshape(nd, L.IW),
            _f64(th).reshape(nd, nbins),
            _i64(s_off),
            _f64(sl).reshape(ns, L.SW),
            _i64(sli).reshape(ns, 2),
            _i64(start).reshape(ns, k),
            _f64(mom).reshape(ns, k, 8),
            _f64(ew).reshape(ns, k, 3),
            _f64(det).reshape(ns, L.DETECTOR_WIDTH),
            _f64(sea).reshape(ns, L.SEASON_WIDTH),
            _f64(bt),
            _f64(bv),
            _i64(r_off),
            _f64(rts),
            _i64(rseq),
            _i64(e_off),
            _i64(e_slot),
            _f64(e_val),
            _i64(fm_slot).reshape(nd, len(r.fmetrics)),
        )

    @staticmethod
    def _slots(
        state: DeviceState,
        names: list[str],
        n_readings: int,
        k: int,
        sl: list[float],
        sli: list[int],
        start: list[int],
        mom: list[float],
        ew: list[float],
        det: list[float],
        sea: list[float],
        bt: list[float],
        bv: list[float],
    ) -> bool:
        """Append one slot per metric name; False when a state has another shape."""
        f = state.features
        frank = {name: i for i, name in enumerate(f.metrics)}
        drank = {name: i for i, name in enumerate(state.detectors)}
        srank = {name: i for i, name in enumerate(state.seasons)}
        width = L.DETECTOR_WIDTH
        for name in names:
            mw = f.metrics.get(name)
            d = state.detectors.get(name)
            sp = state.seasons.get(name)
            if mw is not None:
                n = len(mw.ts)
                if len(mw.start) != k or len(mw.vs) != n:
                    return False
                cap = n + n_readings
                sli.extend((len(bt), cap))
                bt.extend(mw.ts)
                bv.extend(mw.vs)
                pad = [0.0] * n_readings
                bt.extend(pad)
                bv.extend(pad)
                start.extend(mw.start)
                for m in mw.moments:
                    mom.extend(m)
                for e in mw.ewma:
                    ew.extend(e)
                last, upd = mw.last_ts, float(mw.updates)
            else:
                n = 0
                sli.extend((len(bt), n_readings))
                pad = [0.0] * n_readings
                bt.extend(pad)
                bv.extend(pad)
                start.extend([0] * k)
                mom.extend([0.0] * (8 * k))
                ew.extend([0.0, -math.inf, 0.0] * k)
                last, upd = -math.inf, 0.0
            if d is not None:
                if len(d) != width:
                    return False
                det.extend(d)
            else:
                det.extend(_ZEROS[:width])
            if sp is not None:
                if len(sp) not in (L.SEASON_HEADER, L.SEASON_WIDTH):
                    return False
                sea.extend(sp)
                sea.extend(_ZEROS[len(sp) :])
            else:
                sea.extend(_ZEROS)
            sl.extend((
                float(frank.get(name, -1)), float(drank.get(name, -1)), float(srank.get(name, -1)),
                last, upd, float(n), 0.0, float(len(sp)) if sp is not None else 0.0,
            ))  # fmt: skip
        return True

    def score(self) -> _Outputs:
        a = self.arrays
        nr = len(a[14])
        ne = len(a[18])
        o_i = np.zeros((nr, L.OIW), dtype=np.int64)
        o_f = np.zeros((nr, L.OFW))
        o_feat = np.zeros((ne, self.runner.width))
        o_fz = np.zeros(ne, dtype=np.int64)
        o_ev = np.zeros(ne)
        o_drv = np.zeros((ne, 2))
        o_drv[:, 1] = -1.0
        o_row = np.zeros((nr, self.runner.row_width))
        if len(self.devices):
            run_batch(
                *a, self.runner.plan, self.runner.p, o_i, o_f, o_feat, o_fz, o_ev, o_drv, o_row
            )
        return _Outputs(self, o_i, o_f, o_feat, o_fz, o_drv, o_row)


class _Outputs:
    """The kernel's results, turned back into `DeviceState`s and `ScoredReading`s."""

    def __init__(
        self,
        pack: _Pack,
        o_i: np.ndarray,
        o_f: np.ndarray,
        o_feat: np.ndarray,
        o_fz: np.ndarray,
        o_drv: np.ndarray,
        o_row: np.ndarray,
    ) -> None:
        self.pack = pack
        a = pack.arrays
        self.err = a[0][:, L.D_ERR].tolist()
        self.dev = a[0].tolist()
        self.devi = a[1].tolist()
        self.th = a[2].tolist()
        self.sl = a[4].tolist()
        self.sli = a[5].tolist()
        self.start = a[6].tolist()
        k = pack.runner.k
        self.mom = a[7].reshape(len(self.sl), 8 * k).tolist()
        self.ew = a[8].reshape(len(self.sl), 3 * k).tolist()
        self.det = a[9].tolist()
        self.sea = a[10]  # converted per slot, to its length (mostly 8 of 200 floats)
        self.bt = a[11].tolist()
        self.bv = a[12].tolist()
        self.e_off = a[16]
        self.o_i = o_i.tolist()
        self.o_f = o_f  # alert records: read only where a reading had an alert event
        self.scores = o_f[:, : L.O_THR + 1].tolist()
        self.x = o_feat  # drivers' values and evidence: read only when an incident opens
        self.o_drv = o_drv
        self.o_row = o_row

    def failed(self, k: int) -> bool:
        return self.err[k] != 0.0

    def finish(
        self,
        kidx: int,
        state: DeviceState,
        readings: Sequence[SensorReading],
        fresh: list[ScoredReading],
        rows: list[list[float]],
        row_ids: list[int],
    ) -> list[ScoredReading]:
        _, _, names, base, r0 = self.pack.devices[kidx]
        scorer = self.pack.runner.scorer
        alert = state.alert
        alert_id, drivers = alert.alert_id, alert.drivers
        out: list[ScoredReading] = []
        fmetrics = self.pack.runner.fmetrics
        keep_rows = scorer.keep_failure_rows
        label_every = scorer.config.label_every_s
        e_off = self.e_off
        nr = len(readings)
        row_block = self.o_row[r0 : r0 + nr].tolist()
        for i, reading in enumerate(readings):
            r = r0 + i
            oi = self.o_i[r]
            if oi[L.O_RED]:
                out.append(ScoredReading(reading, 0.0, 0.0, False, False, [], redelivered=True))
                continue
            score, threshold = self.scores[r]
            alerts: list[AnomalyAlert] = []
            if oi[L.O_CLOSE] or oi[L.O_EVENT]:
                of = self.o_f[r].tolist()
            if oi[L.O_CLOSE]:
                c = L.O_C
                alerts.append(AnomalyAlert(
                    alert_id, state.device_id, "resolved", _SEVERITY[int(of[c + 4])], of[c],
                    of[c + 3], oi[L.O_CSEQ], of[c + 1], of[c + 2], drivers,
                ))  # fmt: skip
                drivers = ()
            event = oi[L.O_EVENT]
            if event:
                c = L.O_E
                if event == 1:
                    alert_id = f"{reading.device_id}:{reading.seq}"
                    drivers = self._ranked(names, base, int(e_off[r]), int(e_off[r + 1]))
                alerts.append(AnomalyAlert(
                    alert_id, reading.device_id, "open" if event == 1 else "resolved",
                    _SEVERITY[int(of[c + 4])], of[c], of[c + 3], reading.seq, of[c + 1],
                    of[c + 2], drivers, reading.site, reading.sent_at,
                ))  # fmt: skip
                if event == 2:
                    drivers = ()
            miss = oi[L.O_MISS]
            if miss:
                missing = [m for b, m in enumerate(fmetrics) if miss >> b & 1]
                row = None
                reason: str | None = f"no {', '.join(missing)} in the reading"
            else:
                row = row_block[i]
                reason = None
                if not oi[L.O_FROZEN] and reading.ts - state.last_row_ts >= label_every:
                    scorer._buffer_row(state, reading.ts, row)
            scored = ScoredReading(  # positional: a keyword call costs ~0.3 µs more
                reading, score, None if miss else 0.0, oi[L.O_ANOM] == 1, oi[L.O_LATE] == 1,
                alerts, threshold, row if keep_rows else None, False, reason,
            )  # fmt: skip
            out.append(scored)
            if row is not None:
                fresh.append(scored)
                rows.append(row)
                row_ids.append(r)
        self._write_back(kidx, state, names, base, alert_id, drivers)
        return out

    def _ranked(self, names: list[str], base: int, e0: int, e1: int) -> tuple[AlertDriver, ...]:
        """`Scorer._drivers` from the evidence the kernel computed at the opening reading."""
        ranked: list[tuple[float, str, str, float]] = []
        e_slot = self.pack.arrays[17]
        for e in range(e0, e1):
            z, kk = self.o_drv[e].tolist()
            if kk < 0.0:
                continue
            x = float(self.x[e, 0])
            ranked.append((z, names[int(e_slot[e]) - base], EVIDENCE[int(kk)], x))
        ranked.sort(reverse=True)
        return tuple(
            AlertDriver(metric=m, feature=f, value=v, zscore=round(z, 3))
            for z, m, f, v in ranked[: self.pack.runner._drivers]
        )

    def _write_back(
        self,
        kidx: int,
        state: DeviceState,
        names: list[str],
        base: int,
        alert_id: str,
        drivers: tuple[AlertDriver, ...],
    ) -> None:
        D = self.dev[kidx]
        k = self.pack.runner.k
        f = state.features
        f.watermark = D[L.D_WM]
        f.readings = int(D[L.D_READ])
        f.gap = D[L.D_GAP]
        f.ahead = D[L.D_AHEAD]
        f.ahead_reset = D[L.D_ARESET] > 0.0
        franks: list[tuple[float, int]] = []
        dranks: list[tuple[float, int]] = []
        sranks: list[tuple[float, int]] = []
        for i in range(len(names)):
            s = self.sl[base + i]
            if s[L.S_FORD] >= 0.0:
                franks.append((s[L.S_FORD], i))
            if s[L.S_DORD] >= 0.0:
                dranks.append((s[L.S_DORD], i))
            if s[L.S_SORD] >= 0.0:
                sranks.append((s[L.S_SORD], i))
        franks.sort()
        dranks.sort()
        sranks.sort()
        old = f.metrics
        metrics: dict[str, MetricWindows] = {}
        for _, i in franks:
            j = base + i
            s = self.sl[j]
            name = names[i]
            mw = old.get(name) or MetricWindows(k)
            off = self.sli[j][0] + int(s[L.S_BASE])
            n = int(s[L.S_N])
            mw.ts = self.bt[off : off + n]
            mw.vs = self.bv[off : off + n]
            mw.start = self.start[j]
            m = self.mom[j]
            mw.moments = [m[8 * w : 8 * w + 8] for w in range(k)]
            e = self.ew[j]
            mw.ewma = [e[3 * w : 3 * w + 3] for w in range(k)]
            mw.last_ts = s[L.S_LAST]
            mw.updates = int(s[L.S_UPD])
            metrics[name] = mw
        f.metrics = metrics
        state.detectors = {names[i]: self.det[base + i] for _, i in dranks}
        sea = self.sea
        state.seasons = {
            names[i]: sea[base + i, : int(self.sl[base + i][L.S_SLEN])].tolist() for _, i in sranks
        }
        state.calib = D[L.D_C0 : L.D_C2 + 1]
        state.threshold = self.th[kidx]
        state.n = int(D[L.D_N])
        state.seq = self.devi[kidx][L.I_SEQ]
        state.seq_ts = D[L.D_SEQTS]
        state.alert = AlertState(
            open=D[L.D_OPEN] > 0.0,
            alert_id=alert_id,
            opened_ts=D[L.D_OTS],
            opened_seq=self.devi[kidx][L.I_OSEQ],
            severity=_SEVERITY[int(D[L.D_SEV])],
            peak_score=D[L.D_PEAK],
            threshold=D[L.D_ATH],
            normal_run=int(D[L.D_NRUN]),
            abnormal_run=int(D[L.D_ARUN]),
            last_abnormal_ts=D[L.D_LAB],
            drivers=drivers,
            incidents=int(D[L.D_INC]),
        )
