"""The shadow batch observer: fresh failure rows of a scored batch go to the challenger."""

from __future__ import annotations

import numpy as np
import pytest

from edgeml.agents.shadow import observer
from edgeml.models.inference.shadow import ShadowScorer
from edgeml.models.pipeline import BatchResult
from edgeml.models.scored import ScoredReading
from edgeml.topics.records import SensorReading


class Sum:
    def __init__(self, ref: str) -> None:
        self.ref = ref

    def predict(self, features: np.ndarray) -> np.ndarray:
        return features.sum(axis=1) / 10.0


def _scored(seq: int, row: list[float] | None, *, redelivered: bool = False) -> ScoredReading:
    reading = SensorReading(device_id=f"d{seq % 2}", ts=1000.0 + seq, seq=seq, metrics={"t": 1.0})
    return ScoredReading(
        reading=reading,
        anomaly_score=0.1,
        failure_prob=0.0,
        is_anomaly=False,
        late=False,
        alerts=[],
        failure_row=row,
        redelivered=redelivered,
    )


def test_observer_submits_fresh_rows_with_their_keys() -> None:
    shadow = ShadowScorer(Sum("m@2"), champion=Sum("m@1"))
    try:
        result = BatchResult(
            scored=[
                _scored(1, [1.0, 2.0]),
                _scored(2, None),  # the device lacks the model's metrics: nothing to compare
                _scored(3, [3.0, 4.0], redelivered=True),  # applied before: not scored again
                _scored(4, [5.0, 6.0]),
            ]
        )
        observer(shadow)(result, [])
        observer(shadow)(BatchResult(scored=[_scored(5, None)]), [])  # no rows: no submit
        assert shadow.wait_idle(10.0)
        (comparison,) = shadow.drain()
        assert [(r.device_id, r.seq, r.ts) for r in comparison.rows] == [
            ("d1", 1, 1001.0),
            ("d0", 4, 1004.0),
        ]
        assert [r.challenger for r in comparison.rows] == pytest.approx([0.3, 1.1], abs=1e-6)
        assert shadow.stats.submitted == 1
    finally:
        shadow.close()
