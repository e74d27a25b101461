"""`python -m bench` runs end to end on a tiny input: the quick ladder against a real broker.

Checks the summary line's keys and that nothing was lost; never any timing (figures from a
shared test machine mean nothing here: `make bench` is where they are measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import REQUIRED

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_quick_ladder_prints_the_summary_and_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEML_")}
    command = [sys.executable, "-m", "bench", "--quick", "--only", "ladder", "--no-docs"]
    command += ["--bootstrap", kafka_bootstrap, "--ladder-readings", "2000", "--devices", "20"]
    command += ["--out-dir", str(tmp_path)]
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(REQUIRED) <= set(summary)
    for key in ("ceiling_a_rps", "noop_b_rps", "pipeline_c_rps", "batched_readings_per_s"):
        assert summary[key] > 0, key
    assert summary["ladder_lost"] == 0
    assert summary["ladder_duplicates"] == 0
