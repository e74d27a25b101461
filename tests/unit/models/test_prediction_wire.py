"""`prediction_wire` builds the wire dict directly: it must be `Prediction.to_wire()`, byte for
byte once encoded, for every outcome (the record stays the schema's definition)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeml.models.pipeline import prediction_wire
from edgeml.models.scored import ScoredReading
from edgeml.topics.records import Prediction, SensorReading

finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False)
maybe_float = st.one_of(st.none(), finite)


@settings(max_examples=300, deadline=None)
@given(
    device_id=st.text(min_size=1, max_size=12),
    ts=finite,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    score=finite,
    failure_prob=maybe_float,
    late=st.booleans(),
    is_anomaly=st.booleans(),
    sent_at=maybe_float,
    scored_at=finite,
    threshold=finite,
    failure_reason=st.one_of(st.none(), st.text(max_size=20)),
    model_ids=st.dictionaries(
        st.sampled_from(["anomaly", "failure", "failure_backends"]), st.text(max_size=8)
    ),
)
def test_prediction_wire_is_the_prediction_record_on_the_wire(
    device_id: str,
    ts: float,
    seq: int,
    score: float,
    failure_prob: float | None,
    late: bool,
    is_anomaly: bool,
    sent_at: float | None,
    scored_at: float,
    threshold: float,
    failure_reason: str | None,
    model_ids: dict[str, str],
) -> None:
    reading = SensorReading(device_id, ts, seq, {"t": 1.0}, sent_at=sent_at)
    outcome = ScoredReading(
        reading, score, failure_prob, is_anomaly, late, [], threshold,
        failure_reason=failure_reason,
    )  # fmt: skip
    named = model_ids if failure_prob is not None else {
        k: v for k, v in model_ids.items() if k == "anomaly"
    }  # fmt: skip
    expected = Prediction(
        device_id=device_id, ts=ts, seq=seq, anomaly_score=score, failure_prob=failure_prob,
        models=named, late=late, is_anomaly=is_anomaly, sent_at=sent_at, scored_at=scored_at,
        threshold=threshold, failure_reason=failure_reason,
    ).to_wire()  # fmt: skip
    wire = prediction_wire(outcome, model_ids, scored_at)
    assert wire == expected
    assert orjson.dumps(wire) == orjson.dumps(expected)
