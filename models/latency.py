"""Latency measurement shared by the registry (at register time) and the optimizer's reports."""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Timing", "machine_label", "measure", "rss_bytes"]


@dataclass(slots=True, frozen=True)
class Timing:
    """Single-sample p50/p99 (µs) and batch-of-64 throughput (rows per second)."""

    p50_us: float
    p99_us: float
    batch64_per_s: float


def machine_label() -> str:
    """A short description of where a figure was measured."""
    return f"{platform.machine()} nproc={os.cpu_count()}"


def rss_bytes() -> int:
    """This process's resident set size (Linux `/proc`); 0 where it cannot be read."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def measure(
    predict: Callable[[np.ndarray], object],
    features: np.ndarray,
    *,
    single_calls: int = 500,
    batch_calls: int = 50,
    warmup: int = 20,
) -> Timing:
    """Time `predict` on single rows (cycling through `features`) and on batches of 64."""
    rows = np.ascontiguousarray(features, dtype=np.float32)
    singles = [rows[i % len(rows)][None, :] for i in range(max(single_calls, 1))]
    for row in singles[:warmup]:
        predict(row)
    times = np.empty(len(singles), dtype=np.float64)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is Python's cost, not the model's
    try:
        for i, row in enumerate(singles):
            start = clock()
            predict(row)
            times[i] = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    p50, p99 = np.percentile(times, [50, 99]) / 1000.0
    batch = np.ascontiguousarray(np.resize(rows, (64, rows.shape[1])))
    for _ in range(3):
        predict(batch)
    per_s = 0.0
    if batch_calls > 0:
        start = clock()
        for _ in range(batch_calls):
            predict(batch)
        elapsed = (clock() - start) / 1e9
        per_s = 64 * batch_calls / elapsed if elapsed > 0 else float("inf")
    return Timing(p50_us=float(p50), p99_us=float(p99), batch64_per_s=float(per_s))
