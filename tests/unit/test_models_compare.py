"""`edgeml models compare A B`: offline on held-out data, from shadow records, and the gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgeml.app.cli import cli
from edgeml.app.cli.compare import CompareRefused, _gate, compare_stream, parse_ref
from edgeml.models.inference.comparison import agreement, quality
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry
from edgeml.topics.records import ComparedRow, ModelComparison


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return root


def test_refs() -> None:
    assert parse_ref("failure-gbm@2") == ("failure-gbm", "2")
    assert parse_ref("3") == ("failure-gbm", "3")
    with pytest.raises(typer.BadParameter):
        parse_ref("failure-gbm@")


def test_offline_report_matches_the_models_on_the_holdout_union(root: Path) -> None:
    out = CliRunner().invoke(cli, ["models", "compare", "failure-gbm@2", "failure-gbm@1",
                                   "--root", str(root), "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    registry = ModelRegistry(root, sessions=SessionCache())
    xs, ys = zip(*(registry.holdout("failure-gbm", v) for v in ("1", "2")), strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    pairs = np.unique(np.column_stack([x, y]), axis=0)
    x, y = np.ascontiguousarray(pairs[:, :-1], dtype=np.float32), pairs[:, -1]
    a, b = (registry.load("failure-gbm", v).predict(x) for v in ("2", "1"))
    assert report["rows"] == len(y) and report["positives"] == int(y.sum())
    assert report["agreement"] == agreement(a, b)
    assert report["a"]["quality"] == quality(y, a) and report["b"]["quality"] == quality(y, b)
    assert report["a"]["ref"] == "failure-gbm@2" and report["b"]["ref"] == "failure-gbm@1"
    assert report["a"]["latency"]["single_p50_us"] > 0


def test_promote_is_gated_on_quality_and_forced_past_it(root: Path) -> None:
    registry = ModelRegistry(root, sessions=SessionCache())
    base = ["models", "compare", "failure-gbm@2", "failure-gbm@1", "--root", str(root),
            "--json", "--promote", "--no-announce"]  # fmt: skip
    runner = CliRunner()
    report = json.loads(runner.invoke(cli, base[:7]).output)
    worse = report["b"]["quality"]["roc_auc"] < report["a"]["quality"]["roc_auc"]
    assert worse, "on the shipped holdouts v1 is the weaker model (this test needs one)"
    out = runner.invoke(cli, base)
    assert out.exit_code != 0 and isinstance(out.exception, CompareRefused)
    assert "not promoting failure-gbm@1: B's ROC AUC" in str(out.exception)
    assert registry.promoted_version("failure-gbm") == "2"
    margin = report["a"]["quality"]["roc_auc"] - report["b"]["quality"]["roc_auc"] + 0.001
    out = runner.invoke(cli, [*base, "--max-auc-drop", f"{margin:.4f}"])
    assert out.exit_code == 0, out.output
    assert registry.promoted_version("failure-gbm") == "1"
    assert "promoted failure-gbm@1 (was 2)" in out.output
    out = runner.invoke(cli, ["models", "compare", "1", "2", "--root", str(root), "--promote",
                              "--no-announce", "--force"])  # fmt: skip
    assert out.exit_code == 0 and registry.promoted_version("failure-gbm") == "2"


def _comparison(rows: list[tuple[str, int, float, float, float | None]], **kw) -> ModelComparison:
    return ModelComparison(
        champion=kw.get("champion", "m@2"),
        challenger=kw.get("challenger", "m@1"),
        champion_s=kw.get("champion_s", 0.001),
        challenger_s=kw.get("challenger_s", 0.002),
        scored_at=0.0,
        rows=tuple(ComparedRow(d, s, ts, a, b) for d, s, ts, a, b in rows),
        challenger_error=kw.get("error"),
    )


def test_stream_report_labels_from_failures_and_leaves_unknown_rows_out() -> None:
    comparisons = [
        _comparison([("d1", 1, 100.0, 0.9, 0.8), ("d1", 2, 150.0, 0.7, 0.2)]),
        _comparison([("d2", 1, 100.0, 0.1, 0.3), ("d2", 2, 900.0, 0.2, 0.1)]),
        _comparison([("d3", 1, 100.0, 0.5, None)], error="RuntimeError: x", challenger_s=0.01),
        _comparison([("d9", 1, 100.0, 0.5, 0.5)], challenger="other@3"),
    ]
    report = compare_stream(comparisons, {"d1": [200.0]}, champion="m@2", challenger="m@1",
                            horizon_s=300.0, threshold=0.5)  # fmt: skip
    assert report["batches"] == 3 and report["rows"] == 4
    assert report["challenger_failed_batches"] == 1
    assert report["challenger_last_error"] == "RuntimeError: x"
    # rows at ts > 900 - 300 have no known label yet: d2's second row is left out
    assert report["labelled_rows"] == 3
    assert report["a"]["quality"]["positives"] == 2 and report["a"]["quality"]["rows"] == 3
    assert report["agreement"]["rows"] == 4 and report["agreement"]["agree"] == 0.75
    assert report["a"]["latency"]["calls"] == 3 and report["b"]["latency"]["calls"] == 3


def test_stream_report_refuses_without_matching_records() -> None:
    with pytest.raises(CompareRefused, match=r"no comparisons of m@2 -> m@9 .*found: m@2 -> m@1"):
        compare_stream([_comparison([("d", 1, 1.0, 0.1, 0.2)])], {}, champion="m@2",
                       challenger="m@9", horizon_s=300.0, threshold=0.5)  # fmt: skip


def test_gate() -> None:
    q = {"roc_auc": 0.9}
    assert _gate({"a": {"quality": q}, "b": {"quality": {"roc_auc": 0.9}}}, 0.0) is None
    assert "below A's" in (
        _gate({"a": {"quality": q}, "b": {"quality": {"roc_auc": 0.89}}}, 0.0) or ""
    )
    assert _gate({"a": {"quality": q}, "b": {"quality": {"roc_auc": 0.89}}}, 0.02) is None
    assert "no labelled rows" in (_gate({"a": {}, "b": {}}, 0.0) or "")
