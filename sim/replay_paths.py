"""Which files `edgeml replay PATH...` reads: files, directories and glob patterns.

- A path to a file is read whatever its name (`--format` for an unusual suffix).
- A directory stands for the replayable files directly inside it (`*.csv`, `*.jsonl`,
  `*.ndjson`, `*.json`), sorted by name; hidden files and a corpus's `labels.json` (written next
  to the series by `sim.corpus.write_corpus`, it holds labels, not readings) are left out.
- A pattern (`*`, `?`, `[...]`; `**` crosses directories) stands for the replayable files it
  matches, sorted, with the same exclusions: the shell leaves a pattern that matched nothing
  unexpanded, or it was quoted to get past an argument-list limit.

A path named twice (or reached through a directory and a pattern) is read once. A path that does
not exist, a pattern that matches nothing and a directory without a replayable file raise
`ReplayError` (one line) before anything is read.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

from edgeml.sim.replay import ReplayError

__all__ = ["CORPUS_LABELS", "REPLAYABLE_SUFFIXES", "expand_paths"]

REPLAYABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
CORPUS_LABELS = "labels.json"  # = sim.corpus.LABELS_FILE (corpus imports this package's reader)
_PATTERN_CHARS = frozenset("*?[")
_KINDS = ", ".join(f"*{s}" for s in REPLAYABLE_SUFFIXES)


def expand_paths(args: Sequence[str]) -> list[Path]:
    """The files `args` name, in argument order, each directory's or pattern's files sorted,
    every file once."""
    if not args:
        raise ReplayError("no PATH given")
    found: list[Path] = []
    seen: set[Path] = set()
    for arg in args:
        for path in _expand(arg):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def _expand(arg: str) -> Iterator[Path]:
    path = Path(arg)
    if path.is_dir():
        inside = [p for p in sorted(path.iterdir()) if p.is_file() and _replayable(p)]
        if not inside:
            raise ReplayError(f"{arg}: no {_KINDS} file in this directory")
        yield from inside
    elif path.exists():
        yield path
    elif _PATTERN_CHARS & set(arg):
        matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True)) if Path(m).is_file()]
        matches = [p for p in matches if _replayable(p)]
        if not matches:
            raise ReplayError(f"{arg} matches no {_KINDS} file")
        yield from matches
    else:
        raise ReplayError(f"{arg} does not exist")


def _replayable(path: Path) -> bool:
    return (
        path.suffix.lower() in REPLAYABLE_SUFFIXES
        and not path.name.startswith(".")
        and path.name != CORPUS_LABELS
    )
