"""Alert lifecycle: one `open` alert when an incident starts, one `resolved` when it ends.

An incident opens on the first anomalous reading (or after `open_after` consecutive ones) and
resolves once the device has been normal - score under `release` x threshold - for
`resolve_after_readings` consecutive readings *and* `resolve_after_s` seconds of event time, so
a flickering score gives one alert, not a storm. `alert_id` is `"<device_id>:<opened seq>"`:
deterministic, so a replay or a restart that re-emits an alert can be deduplicated downstream.

Severity comes from how far over its threshold the score went, as a fraction of the room
above the threshold: `excess = (score - threshold) / (1 - threshold)`; below `warning_at` is
`info`, below `critical_at` `warning`, else `critical`. The `resolved` alert carries the worst
severity and score seen during the incident.

Usually one `AlertPolicy` per `Scorer`; each device keeps an `AlertState`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgeml.topics.records import AlertDriver, AnomalyAlert

__all__ = ["AlertPolicy", "AlertState", "Severity", "severity_of"]

Severity = Literal["info", "warning", "critical"]
_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def severity_of(score: float, threshold: float, warning_at: float, critical_at: float) -> Severity:
    """`info` / `warning` / `critical` from the score's excess over the threshold."""
    room = 1.0 - threshold
    excess = (score - threshold) / room if room > 0.0 else 1.0
    if excess >= critical_at:
        return "critical"
    if excess >= warning_at:
        return "warning"
    return "info"


@dataclass(slots=True)
class AlertState:
    """One device's alert bookkeeping (plain fields, serialized with the device state)."""

    open: bool = False
    alert_id: str = ""
    opened_ts: float = 0.0
    opened_seq: int = -1
    severity: str = "info"
    peak_score: float = 0.0
    threshold: float = 0.0
    normal_run: int = 0
    abnormal_run: int = 0
    last_abnormal_ts: float = 0.0
    drivers: tuple[AlertDriver, ...] = ()
    incidents: int = 0

    def to_obj(self) -> list[Any]:
        return [
            self.open,
            self.alert_id,
            self.opened_ts,
            self.opened_seq,
            self.severity,
            self.peak_score,
            self.threshold,
            self.normal_run,
            self.abnormal_run,
            self.last_abnormal_ts,
            [[d.metric, d.feature, d.value, d.zscore] for d in self.drivers],
            self.incidents,
        ]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> AlertState:
        return cls(
            open=bool(obj[0]),
            alert_id=str(obj[1]),
            opened_ts=float(obj[2]),
            opened_seq=int(obj[3]),
            severity=str(obj[4]),
            peak_score=float(obj[5]),
            threshold=float(obj[6]),
            normal_run=int(obj[7]),
            abnormal_run=int(obj[8]),
            last_abnormal_ts=float(obj[9]),
            drivers=tuple(
                AlertDriver(str(a), str(b), float(c), float(d)) for a, b, c, d in obj[10]
            ),
            incidents=int(obj[11]),
        )


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """When an incident opens and resolves, and how severe it is. Frozen; one per Scorer."""

    open_after: int = 1
    resolve_after_readings: int = 30
    resolve_after_s: float = 30.0
    release: float = 0.7
    warning_at: float = 0.25
    critical_at: float = 0.6

    def __post_init__(self) -> None:
        if self.open_after < 1 or self.resolve_after_readings < 1 or self.resolve_after_s < 0:
            raise ValueError("open_after and resolve_after_readings must be >= 1, _s >= 0")
        if not 0.0 <= self.warning_at <= self.critical_at:
            raise ValueError("need 0 <= warning_at <= critical_at")

    def update(
        self,
        state: AlertState,
        *,
        device_id: str,
        ts: float,
        seq: int,
        score: float,
        threshold: float,
        is_anomaly: bool,
        drivers: Callable[[], tuple[AlertDriver, ...]],
        site: str | None = None,
        sent_at: float | None = None,
    ) -> AnomalyAlert | None:
        """Advance the lifecycle by one (in-order, non-late) reading; maybe emit an alert.

        While an incident is open, a reading counts as abnormal down to `release * threshold`
        (two-level hysteresis), so a score hovering around the threshold keeps one incident.
        """
        if state.open and not is_anomaly and score >= self.release * threshold:
            is_anomaly = True
        if is_anomaly:
            state.abnormal_run += 1
            state.normal_run = 0
            state.last_abnormal_ts = ts
            if state.open:
                if score > state.peak_score:
                    state.peak_score = score
                    sev = severity_of(score, threshold, self.warning_at, self.critical_at)
                    if _RANK[sev] > _RANK[state.severity]:
                        state.severity = sev
                return None
            if state.abnormal_run < self.open_after:
                return None
            state.open = True
            state.alert_id = f"{device_id}:{seq}"
            state.opened_ts = ts
            state.opened_seq = seq
            state.peak_score = score
            state.threshold = threshold
            state.severity = severity_of(score, threshold, self.warning_at, self.critical_at)
            state.drivers = drivers()
            state.incidents += 1
            return self._alert(state, device_id, "open", ts, seq, score, site, sent_at)
        state.abnormal_run = 0
        if not state.open:
            return None
        state.normal_run += 1
        if (
            state.normal_run >= self.resolve_after_readings
            and ts - state.last_abnormal_ts >= self.resolve_after_s
        ):
            return self.close(state, device_id, ts, seq, score, site=site, sent_at=sent_at)
        return None

    def close(
        self,
        state: AlertState,
        device_id: str,
        ts: float,
        seq: int,
        score: float,
        *,
        site: str | None = None,
        sent_at: float | None = None,
    ) -> AnomalyAlert | None:
        """Resolve the open incident now (normal again, or the device went idle)."""
        if not state.open:
            return None
        alert = self._alert(state, device_id, "resolved", ts, seq, state.peak_score, site, sent_at)
        state.open = False
        state.normal_run = 0
        state.abnormal_run = 0
        state.drivers = ()
        return alert

    @staticmethod
    def _alert(
        state: AlertState,
        device_id: str,
        kind: Literal["open", "resolved"],
        ts: float,
        seq: int,
        score: float,
        site: str | None,
        sent_at: float | None,
    ) -> AnomalyAlert:
        sev: Severity = (
            "critical"
            if state.severity == "critical"
            else ("warning" if state.severity == "warning" else "info")
        )
        return AnomalyAlert(
            alert_id=state.alert_id,
            device_id=device_id,
            state=kind,
            severity=sev,
            ts=ts,
            opened_ts=state.opened_ts,
            seq=seq,
            score=score,
            threshold=state.threshold,
            drivers=state.drivers,
            site=site,
            sent_at=sent_at,
        )
