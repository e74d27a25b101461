"""The compiled scoring core: features, detectors, seasonal profiles, calibration, threshold
and alert decisions for a whole batch in one numba call (`@njit(cache=True)`, wheels only).

`Scorer(kernel="compiled")` (the default; `EDGEML_SCORING_KERNEL`) scores with it; the
pure-Python modules (`models.features`, `.detectors`, `.seasonal`, `.calibration`,
`.alerting`) stay the reference and the test oracle: the same float operations in the same
order, so outputs and states are equal (tests/unit/models/kernel hold them to 1e-9 and to
byte-equal `DeviceState.to_bytes`).

Why: the reference costs ~60 µs per reading batched, nearly all of it the interpreter
(per-reading lists, dicts and calls; `FeatureExtractor._update` alone was 36% of worker
samples). Device state stays in `DeviceState` (the EDS3 codec and recovery are unchanged): a
batch packs it into flat arrays (`pack`, `layout`), `batch.run_batch` scores every device,
`outputs` writes the states back and builds the `ScoredReading`s.

Modules: `layout` (array layout), `features` (windows), `detect` (detectors, profiles,
calibration, threshold, severity), `batch` (the loop) with its steps `batch_features`
(watermark, window updates) and `batch_alert` (alert lifecycle, failure-model row); `runner`
(`KernelRunner`: which device goes where), `pack` (states to arrays, the call) and `outputs`
(arrays back to states and `ScoredReading`s).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from numba import config as _numba_config
from numba.misc.appdirs import user_cache_dir


def sources_digest(folder: Path = Path(__file__).parent) -> str:
    """A digest of every kernel module's source. numba keys a cached function by its own
    file's path and stamp only, so a compiled `run_batch` would outlive an edit of a step it
    calls in another module (numba's documented limit): one cache folder per digest."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# numba's on-disk cache of the compiled kernel goes to the user's cache directory (e.g.
# ~/.cache/edgeml-numba/<sources digest>), never next to the sources: an installed package
# must not write into site-packages (tests/integration/test_wheel_install.py).
# NUMBA_CACHE_DIR, read by numba itself, still wins. Set before the kernel modules are
# imported: numba picks a function's cache location when it is decorated.
if not getattr(_numba_config, "CACHE_DIR", ""):  # numba sets its config attributes at import
    _cache = Path(user_cache_dir("edgeml-numba")) / sources_digest()
    setattr(_numba_config, "CACHE_DIR", str(_cache))  # noqa: B010

from edgeml.models.kernel.runner import KernelRunner  # noqa: E402 - after CACHE_DIR is set

__all__ = ["KernelRunner", "sources_digest", "warm", "warm_seconds"]

_warmed: float | None = None


def warm() -> float:
    """Compile (or load from numba's on-disk cache) the kernel once per process, on a tiny
    synthetic batch; returns the seconds it took the first time (0.0 after)."""
    global _warmed
    if _warmed is not None:
        return 0.0
    start = time.perf_counter()
    from edgeml.models.scoring import Scorer
    from edgeml.topics.records import SensorReading

    scorer = Scorer(kernel="reference")
    runner = KernelRunner(scorer)
    state = scorer.new_state("warm-up")
    readings = [SensorReading("warm-up", 1000.0 + i, i, {"x": float(i % 3)}) for i in range(4)]
    runner.run([(state, readings)], [], [])
    _warmed = time.perf_counter() - start
    return _warmed


def warm_seconds() -> float | None:
    """How long this process's warm-up took (None: not warmed yet)."""
    return _warmed
