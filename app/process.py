"""Process-wide set-up of a worker, before Faust makes its event loop."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from edgeml.app.settings import Settings

__all__ = [
    "WORKER_SKIPPED_IMPORTS",
    "configure_process",
    "freeze_startup_heap",
    "skipping_optional_imports",
]

# Optional dependencies of libraries the worker imports that its code never uses. river imports
# scikit-learn only for `river.stream.iter_sklearn_dataset` (inside `try: ... except
# ImportError`), reached from `river.preprocessing` via `river.tree` and `river.datasets`:
# ~6 MB of RSS, ~150 modules and ~0.1 s of start-up per worker for a function no worker calls
# (scipy, which river needs anyway, was most of what scikit-learn's import cost besides).
WORKER_SKIPPED_IMPORTS = ("sklearn",)


@contextmanager
def skipping_optional_imports(names: tuple[str, ...] = WORKER_SKIPPED_IMPORTS) -> Iterator[None]:
    """While inside, `import <name>` (and its submodules) raises ImportError, for each of `names`
    not imported yet, so a library that imports one of them only optionally goes without it.
    Afterwards they import normally again (a module that needs one in this process still gets
    it); only what was imported inside went without."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import system: "not importable"
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def configure_process(settings: Settings) -> None:
    """The event loop policy (`Settings.event_loop`) and the floor of the Kafka/Faust loggers
    (`Settings.library_log_level`). Call it where Faust's CLI imports the app module: the
    worker makes its loop after that import."""
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    for library in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(library).setLevel(settings.library_log_level)
    if settings.gc_threshold:
        # The hot path allocates short-lived containers by the thousand per batch (lists of a
        # batch's outputs, wire dicts); at Python's 700 the young generation is collected
        # several times per batch and every tenth young collection walks the middle one.
        # Cyclic garbage now waits longer: end RSS in `bench --only memory` was 904 against
        # 808 MB with Python's defaults (one run each, the faster worker also holding more
        # output in flight; docs/benchmarks.md), for ~25 % less CPU per batched reading.
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_threshold, middle, old)


def freeze_startup_heap(settings: Settings) -> None:
    """Move every object alive now (modules, models, the app) to the GC's permanent
    generation, so full collections no longer walk them: call once the app is built. Objects
    made later (device states, Faust's runtime) are collected as usual."""
    if settings.gc_threshold:
        gc.collect()
        gc.freeze()
