"""The corpus figures (`sim.corpus_eval`): the same report from the in-process `Scorer` and from
published predictions and alerts (what `edgeml evaluate --corpus` reads), and the command's
one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeml.app.settings import Settings
from edgeml.models.scoring import Scorer
from edgeml.sim.corpus import build_corpus, write_corpus
from edgeml.sim.corpus_eval import evaluate_corpus, run_series, score_outputs

Invoke = Callable[..., tuple[int, str, str]]
NAMES = ("spikes-1s-b", "shift-1s-b")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus([s for s in build_corpus(0) if s.name in NAMES], folder, seed=0)
    return folder


def _outputs(folder: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    from edgeml.sim.corpus import load_corpus

    predictions, alerts = [], []
    for s in load_corpus(folder, "holdout"):
        run = run_series(s, Scorer())
        predictions += [
            {"device_id": s.name, "seq": i, "ts": t, "anomaly_score": sc, "is_anomaly": bool(f)}
            for i, (t, sc, f) in enumerate(zip(run.ts, run.scores, run.flagged, strict=True))
        ]
        alerts += [{"device_id": s.name, "state": "open", "ts": t} for t in run.opened]
    return predictions, alerts


def test_published_outputs_give_the_in_process_report(corpus: Path) -> None:
    from edgeml.sim.corpus import load_corpus

    predictions, alerts = _outputs(corpus)
    direct = evaluate_corpus(load_corpus(corpus, "holdout"), "holdout")
    assert score_outputs(corpus, predictions, alerts) == direct
    assert direct["series"] == 2 and direct["deployed_detail"]["standard"]["windows"] == 3


def test_a_series_without_predictions_is_an_error(corpus: Path) -> None:
    predictions, alerts = _outputs(corpus)
    with pytest.raises(ValueError, match=r"no predictions for 1 series, e\.g\. 'spikes-1s-b'"):
        score_outputs(corpus, [p for p in predictions if p["device_id"] != NAMES[0]], alerts)


def test_the_command_prints_the_report_and_refuses_what_it_cannot_read(
    invoke_cli: Invoke, settings_factory: Callable[..., Settings], corpus: Path, tmp_path: Path
) -> None:
    settings = settings_factory()
    predictions, alerts = _outputs(corpus)
    p, a = tmp_path / "p.jsonl", tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in predictions))
    a.write_text("".join(json.dumps(x) + "\n" for x in alerts))
    code, out, err = invoke_cli(settings, "evaluate", "--corpus", str(corpus),
                                "--predictions", str(p), "--alerts", str(a))  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0] == f"corpus {corpus} (holdout, 2 series)"
    assert "calibrated score, best fleet-wide threshold" in out and "baseline ew_zscore" in out

    code, _, err = invoke_cli(settings, "evaluate", "--corpus", str(corpus))
    assert code == 2 and err.strip().endswith("--corpus needs --predictions FILE and --alerts FILE")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    code, _, err = invoke_cli(settings, "evaluate", "--corpus", str(corpus), "--predictions",
                              str(tmp_path / "bad.jsonl"), "--alerts", str(a))  # fmt: skip
    assert code == 2 and err.strip().endswith("bad.jsonl:1: not JSON"), err
    code, _, err = invoke_cli(settings, "evaluate", "--corpus", str(corpus), "--split", "dev",
                              "--predictions", str(p), "--alerts", str(a))  # fmt: skip
    assert code == 2 and "'dev' is not holdout, tune or all" in err
