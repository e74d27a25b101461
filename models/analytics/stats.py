"""One stretch of event time's aggregates (`WindowStats`) and the names analytics keys use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["FLEET_KEY", "SEVERITIES", "UNASSIGNED_SITE", "WINDOW_KINDS", "WindowStats"]

SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
WINDOW_KINDS: tuple[str, ...] = ("tumbling", "hopping")
FLEET_KEY = "*"  # the whole fleet, stored beside the sites
UNASSIGNED_SITE = "unassigned"  # readings without a `site`

_SEVERITY_INDEX = {name: i for i, name in enumerate(SEVERITIES)}


class WindowStats:
    """Aggregates of one key over one stretch of event time (a pane, a window, a total).

    Readings, anomalies, late readings, dead letters, alerts opened by severity, the anomaly
    score's sum and max, and per metric `[n, sum, min, max]`. `merge` is associative and
    commutative; `to_wire`/`from_wire` round-trip exactly (JSON floats are shortest-repr).
    """

    __slots__ = (
        "alerts",
        "anomalies",
        "count",
        "dead_letters",
        "late",
        "metrics",
        "score_max",
        "score_sum",
    )

    def __init__(self) -> None:
        self.count = 0
        self.anomalies = 0
        self.late = 0
        self.dead_letters = 0
        self.alerts = [0, 0, 0]
        self.score_sum = 0.0
        self.score_max = 0.0
        self.metrics: dict[str, list[float]] = {}

    def add_reading(
        self, metrics: Mapping[str, float], score: float, anomaly: bool, late: bool
    ) -> None:
        self.count += 1
        self.anomalies += anomaly
        self.late += late
        self.score_sum += score
        if score > self.score_max:
            self.score_max = score
        own = self.metrics
        for name, value in metrics.items():
            m = own.get(name)
            if m is None:
                own[name] = [1.0, value, value, value]
                continue
            m[0] += 1.0
            m[1] += value
            if value < m[2]:
                m[2] = value
            elif value > m[3]:
                m[3] = value

    def add_alert(self, severity: str) -> None:
        index = _SEVERITY_INDEX.get(severity)
        if index is None:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        self.alerts[index] += 1

    def merge(self, other: WindowStats) -> WindowStats:
        """Fold `other` into this one (in place) and return self."""
        self.count += other.count
        self.anomalies += other.anomalies
        self.late += other.late
        self.dead_letters += other.dead_letters
        a, b = self.alerts, other.alerts
        a[0] += b[0]
        a[1] += b[1]
        a[2] += b[2]
        self.score_sum += other.score_sum
        if other.score_max > self.score_max:
            self.score_max = other.score_max
        own = self.metrics
        for name, theirs in other.metrics.items():
            m = own.get(name)
            if m is None:
                own[name] = theirs[:]
                continue
            m[0] += theirs[0]
            m[1] += theirs[1]
            if theirs[2] < m[2]:
                m[2] = theirs[2]
            if theirs[3] > m[3]:
                m[3] = theirs[3]
        return self

    def counts(self) -> WindowStats:
        """A copy without the per-metric and score parts (what a key's running total keeps)."""
        out = WindowStats()
        out.count, out.anomalies, out.late = self.count, self.anomalies, self.late
        out.dead_letters, out.alerts = self.dead_letters, list(self.alerts)
        return out

    def add_counts(self, other: WindowStats) -> WindowStats:
        """Add `other`'s counts only (a pane joining a running total); in place, returns self."""
        self.count += other.count
        self.anomalies += other.anomalies
        self.late += other.late
        self.dead_letters += other.dead_letters
        alerts = self.alerts
        for i, n in enumerate(other.alerts):
            alerts[i] += n
        return self

    def subtract_counts(self, other: WindowStats) -> WindowStats:
        """Take `other`'s counts out (a pane leaving a running total); in place, returns self."""
        self.count -= other.count
        self.anomalies -= other.anomalies
        self.late -= other.late
        self.dead_letters -= other.dead_letters
        for i, n in enumerate(other.alerts):
            self.alerts[i] -= n
        return self

    def summary(self) -> dict[str, Any]:
        """The JSON shape the analytics API serves."""
        n = self.count
        return {
            "count": n,
            "anomalies": self.anomalies,
            "anomaly_rate": self.anomalies / n if n else 0.0,
            "late": self.late,
            "dead_letters": self.dead_letters,
            "alerts": dict(zip(SEVERITIES, self.alerts, strict=True)),
            "score": {"mean": self.score_sum / n if n else 0.0, "max": self.score_max},
            "metrics": {
                name: {"count": int(m[0]), "mean": m[1] / m[0], "min": m[2], "max": m[3]}
                for name, m in sorted(self.metrics.items())
            },
        }

    def to_wire(self) -> list[Any]:
        return [
            self.count,
            self.anomalies,
            self.late,
            self.dead_letters,
            *self.alerts,
            self.score_sum,
            self.score_max,
            self.metrics,
        ]

    @classmethod
    def from_wire(cls, wire: Sequence[Any]) -> WindowStats:
        out = cls()
        out.count, out.anomalies, out.late, out.dead_letters = (int(x) for x in wire[:4])
        out.alerts = [int(x) for x in wire[4:7]]
        out.score_sum, out.score_max = float(wire[7]), float(wire[8])
        out.metrics = {name: [float(x) for x in m] for name, m in wire[9].items()}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowStats) and self.to_wire() == other.to_wire()

    def __repr__(self) -> str:
        return f"WindowStats({self.to_wire()!r})"
