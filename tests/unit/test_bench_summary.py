"""`python -m bench`'s summary line: every required key, null where a part did not run."""

from __future__ import annotations

from bench.__main__ import REQUIRED, summarize

PIPELINE = (
    "ReadingPipeline.process end to end (500 messages per batch; state via to_bytes), compiled"
)


def test_every_required_key_is_there_even_when_nothing_ran() -> None:
    summary = summarize({}, 1.0, quick=True)
    assert set(REQUIRED) <= set(summary)
    assert summary["steps_us_batched"] is None and summary["peer_bytewax_ratio"] is None


def test_steps_us_batched_is_the_compiled_pipeline_per_reading() -> None:
    summary = summarize({"steps": {"rows": {PIPELINE: 12.8, "other": 1.0}}}, 1.0, quick=False)
    assert summary["steps_us_batched"] == 12.8
    assert summary["step_us"] == {"pipeline": 12.8}
