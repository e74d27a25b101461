"""`edgeml replay PATH...`: which files files, directories and glob patterns stand for, and the
one-line exit-2 errors when they stand for nothing (no broker: the checks fire first)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeml.app.settings import Settings
from edgeml.sim.corpus import LABELS_FILE, CorpusSeries, nab_labels, write_corpus
from edgeml.sim.replay import ReplayColumns, ReplayError, merged_readings
from edgeml.sim.replay_paths import CORPUS_LABELS, expand_paths

Invoke = Callable[..., tuple[int, str, str]]
ROW = "device_id,ts,temp\nd1,1767225600,21.5\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """a/ with two CSVs, a JSONL, an NDJSON, a .json, notes, a hidden file, labels.json and a
    sub-directory b/ with one more CSV."""
    a = tmp_path / "a"
    (a / "b").mkdir(parents=True)
    for name in ("z.csv", "m.csv", "k.jsonl", "j.ndjson", "i.json", "README.txt", ".hidden.csv"):
        (a / name).write_text(ROW)
    (a / LABELS_FILE).write_text('{\n "format": "edgeml-corpus-labels/1"\n}\n')
    (a / "b" / "y.csv").write_text(ROW)
    return tmp_path


def _names(paths: list[Path], root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in paths]


def test_a_directory_is_its_replayable_files_sorted(tree: Path) -> None:
    found = expand_paths([str(tree / "a")])
    assert _names(found, tree) == ["a/i.json", "a/j.ndjson", "a/k.jsonl", "a/m.csv", "a/z.csv"]


def test_a_pattern_is_the_replayable_files_it_matches(tree: Path) -> None:
    assert _names(expand_paths([str(tree / "a" / "*.csv")]), tree) == ["a/m.csv", "a/z.csv"]
    assert _names(expand_paths([str(tree / "**" / "*.csv")]), tree) == [
        "a/b/y.csv",
        "a/m.csv",
        "a/z.csv",
    ]
    assert _names(expand_paths([str(tree / "a" / "*")]), tree) == [
        "a/i.json",
        "a/j.ndjson",
        "a/k.jsonl",
        "a/m.csv",
        "a/z.csv",
    ]  # README.txt, labels.json and the directory b are left out


def test_files_keep_argument_order_and_each_is_read_once(tree: Path) -> None:
    a = tree / "a"
    found = expand_paths([str(a / "z.csv"), str(a), str(a / "*.csv"), str(a / "README.txt")])
    assert _names(found, tree) == [
        "a/z.csv",
        "a/i.json",
        "a/j.ndjson",
        "a/k.jsonl",
        "a/m.csv",
        "a/README.txt",  # named explicitly: read whatever its suffix (--format decides)
    ]


def test_the_skipped_labels_file_is_the_one_the_corpus_writes(tmp_path: Path) -> None:
    assert CORPUS_LABELS == LABELS_FILE
    ts = np.arange(100, dtype=np.float64) + 1767225600.0
    series = CorpusSeries(
        "flat-a", "temp", "tune", ("flat",), ts, np.zeros(100), (), nab_labels(ts, [])
    )
    write_corpus([series], tmp_path)
    files = expand_paths([str(tmp_path)])
    assert files == [tmp_path / "flat-a.csv"]
    readings = list(merged_readings(files, columns=ReplayColumns(device_from="filename")))
    assert [(r.device_id, r.seq, r.ts) for r in readings] == [
        ("flat-a", n, t) for n, t in enumerate(ts.tolist())
    ]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("missing.csv", "missing.csv does not exist"),
        ("*.csv", "*.csv matches no *.csv, *.jsonl, *.ndjson, *.json file"),
        ("a/b/*.jsonl", "a/b/*.jsonl matches no *.csv, *.jsonl, *.ndjson, *.json file"),
        ("empty", "empty: no *.csv, *.jsonl, *.ndjson, *.json file in this directory"),
    ],
)
def test_paths_that_stand_for_nothing_are_one_line_errors(
    tree: Path, monkeypatch: pytest.MonkeyPatch, arg: str, message: str
) -> None:
    (tree / "empty").mkdir()
    (tree / "empty" / "notes.txt").write_text("x")
    monkeypatch.chdir(tree)
    with pytest.raises(ReplayError) as raised:
        expand_paths([arg])
    assert str(raised.value) == message


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


def test_replay_of_a_pattern_without_match_exits_2_in_one_line(
    invoke_cli: Invoke, settings: Settings, tmp_path: Path
) -> None:
    pattern = str(tmp_path / "nothing-*.csv")
    code, out, err = invoke_cli(settings, "replay", pattern, "--no-progress")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"edgeml replay: error: Invalid value for PATH: {pattern} matches no *.csv, *.jsonl, "
        "*.ndjson, *.json file"
    ]


def test_replay_checks_every_file_before_connecting(
    invoke_cli: Invoke, settings: Settings, tmp_path: Path
) -> None:
    """The second file's bad line stops the run with exit 2 although the first file is fine
    and no broker is reachable: nothing tried to connect."""
    (tmp_path / "a.csv").write_text(ROW)
    (tmp_path / "b.jsonl").write_text('{"device_id": "d2", "ts": 1767225600, "t": 1}\n{oops\n')
    code, out, err = invoke_cli(settings, "replay", str(tmp_path), "--no-progress")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("edgeml replay: error: Invalid value for PATH: b.jsonl:2: not JSON")
