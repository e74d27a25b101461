"""The kernel's outputs turned back into `DeviceState`s and `ScoredReading`s.

`Outputs` is the output side of `models.kernel.runner`: per device, its `ScoredReading`s, alerts
(ids and named drivers, which the arrays cannot hold) and failure-model rows from the
per-reading outputs, then its state written back into the same `DeviceState`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from edgeml.models.alerting import AlertState, Severity
from edgeml.models.detectors import EVIDENCE
from edgeml.models.features import MetricWindows
from edgeml.models.kernel import layout as L
from edgeml.models.scored import ScoredReading
from edgeml.topics.records import AlertDriver, AnomalyAlert, SensorReading

if TYPE_CHECKING:
    from edgeml.models.kernel.pack import Pack
    from edgeml.models.state import DeviceState

_SEVERITY: tuple[Severity, Severity, Severity] = ("info", "warning", "critical")
# a failure-model row not turned into a list (yet): `KernelRunner.run` fills it when needed
LAZY_ROW: list[float] = []


class Outputs:
    """The kernel's results, turned back into `DeviceState`s and `ScoredReading`s."""

    def __init__(
        self,
        pack: Pack,
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
        o_row = self.o_row
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
                # the row as a list only where one is kept: `KernelRunner.run` hands the
                # failure model the rows as one array (LAZY_ROW stands in for the list)
                row = LAZY_ROW
                reason = None
                if not oi[L.O_FROZEN] and reading.ts - state.last_row_ts >= label_every:
                    row = o_row[r].tolist()
                    scorer._buffer_row(state, reading.ts, row)
                if keep_rows and row is LAZY_ROW:
                    row = o_row[r].tolist()
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
