"""Labelled corpus series through the real broker and worker (issue #11, "Done when"): written
with `sim.corpus.write_corpus`, replayed with `edgeml replay DIR --device-from filename`, read
back with `edgeml tail ... --until-end --json` and scored by `edgeml evaluate --corpus`.

The worker's scores and alerts must equal the in-process `Scorer` on the same series
(`sim.corpus_eval.run_series`), which is what makes the in-process corpus figures
(`python -m edgeml.sim.corpus_eval`, docs/models.md) the figures of the deployed pipeline;
the series are replayed interleaved on shared partitions, at full speed, so equality also shows
that a device's predictions do not depend on the other devices or on wall-clock time.
Four holdout series of different samplings (1 s, 15 min, 1 h, irregular) keep it short;
`EDGEML_TEST_CORPUS=holdout` runs the whole held-out split (22 series, 59,468 readings) and
prints the report, the figure quoted in docs/models.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeml.app.settings import Settings
from edgeml.models.scoring import Scorer
from edgeml.sim.corpus import build_corpus, write_corpus
from edgeml.sim.corpus_eval import run_series

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]
FEW = ("spikes-1s-b", "daily-step-15min-b", "hourly-temp-1h-b", "irregular-gaps-b")
WHOLE = os.environ.get("EDGEML_TEST_CORPUS") == "holdout"


def _read_all(run_cli: Run, settings: Settings, topic: str, expected: int) -> list[Any]:
    """Every record of an output topic, once the worker has written `expected` of them (each
    tail stops at the end offsets it found at its start, so read again until complete)."""
    records: list[Any] = []
    for _ in range(90):
        tail = run_cli(settings, "tail", topic, "--from-beginning", "--until-end", "--json",
                       timeout=120)  # fmt: skip
        assert tail.returncode in (0, 1), tail.stderr
        records = [json.loads(line) for line in tail.stdout.splitlines()]
        if len(records) >= expected:
            break
    return records


def test_replayed_corpus_series_score_exactly_as_in_process(
    settings_factory: Callable[..., Settings],
    worker_factory: Callable[..., subprocess.Popen[bytes]],
    run_cli: Run,
    tmp_path: Path,
) -> None:
    chosen = [s for s in build_corpus(0) if (s.split == "holdout" if WHOLE else s.name in FEW)]
    folder = tmp_path / "corpus"
    write_corpus(chosen, folder, seed=0)
    settings = settings_factory()
    worker_factory(settings)

    replay = run_cli(settings, "replay", str(folder), "--device-from", "filename",
                     "--no-progress", timeout=300)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    readings = sum(s.ts.size for s in chosen)
    n = len(chosen)
    assert replay.stdout.startswith(f"replay: {readings:,} readings from {n} devices in {n} files")

    predictions = _read_all(run_cli, settings, "predictions", readings)
    assert len(predictions) == readings
    # in process: the same series, one Scorer each, as the corpus figures are computed
    local = {s.name: run_series(s, Scorer()) for s in chosen}
    for s in chosen:
        mine = sorted((p["seq"], p["anomaly_score"], p["is_anomaly"]) for p in predictions
                      if p["device_id"] == s.name)  # fmt: skip
        run = local[s.name]
        assert [m[0] for m in mine] == list(range(s.ts.size))
        assert [m[1] for m in mine] == pytest.approx(run.scores.tolist(), abs=1e-12), s.name
        assert [m[2] for m in mine] == run.flagged.tolist(), s.name
        assert all(p["failure_prob"] is None and "failure" not in p["models"]
                   for p in predictions if p["device_id"] == s.name)  # fmt: skip

    opened = sum(len(r.opened) for r in local.values())
    alerts = [a for a in _read_all(run_cli, settings, "alerts", opened) if a["state"] == "open"]
    assert sorted((a["device_id"], a["ts"]) for a in alerts) == sorted(
        (name, ts) for name, run in local.items() for ts in run.opened
    )

    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(a) + "\n" for a in alerts))
    evaluated = run_cli(settings, "evaluate", "--corpus", str(folder), "--predictions",
                        str(tmp_path / "p.jsonl"), "--alerts", str(tmp_path / "a.jsonl"),
                        "--json", timeout=300)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    print(json.dumps({k: report[k] for k in ("calibrated", "deployed", "baselines")}))
    assert report["series"] == n and set(report["baselines"]) == {"half_space_trees", "ew_zscore"}
    assert report["calibrated"]["score"] > max(report["baselines"].values())
    assert all(value > 0 for value in report["deployed"].values())
