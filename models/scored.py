"""What scoring returns: one reading's outputs (`ScoredReading`), a device whose scoring raised
(`DeviceFailure`) and the fault of a score outside [0, 1] (`ScoringFault`).

Kept apart from the `Scorer` so that what reads results (the pipeline, analytics, metrics)
imports only these types; re-exported by `models.scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeml.topics.records import AnomalyAlert, SensorReading

__all__ = ["DeviceFailure", "ScoredReading", "ScoringFault"]


@dataclass(slots=True)
class ScoredReading:
    """One reading's outputs. `alerts` holds lifecycle events this reading caused (0-2)."""

    reading: SensorReading
    anomaly_score: float
    failure_prob: float | None  # None: no failure model applies (`failure_reason` says why)
    is_anomaly: bool
    late: bool
    alerts: list[AnomalyAlert]
    threshold: float = 0.0
    failure_row: list[float] | None = None
    redelivered: bool = False  # applied before (see `models.scoring`): not scored again
    failure_reason: str | None = None


class ScoringFault(ValueError):
    """A reading's score came out outside [0, 1] (NaN included): never learned nor published."""


class DeviceFailure(list[ScoredReading]):
    """`score_many`'s result for a device whose scoring raised: empty, with the `error`.

    A list, so code that reads `score_many` results keeps its types; `ReadingPipeline`
    dead-letters the device's readings."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
