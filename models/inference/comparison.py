"""Champion vs challenger: agreement, quality against labels, latency (numpy only).

Used by `edgeml models compare` on held-out data and on the `model-comparisons` topic, and by
the ensemble evaluation. Labels on the stream are delayed: a reading at `ts` of a device is
positive when a maintenance `failure` of that device follows within the horizon
(`label_from_failures`, the trainer's rule: `failure_ts - horizon <= ts < failure_ts`).

>>> y = np.array([0, 0, 1, 1])
>>> round(roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])), 3)
0.75
>>> round(average_precision(y, np.array([0.1, 0.4, 0.35, 0.8])), 3)
0.833
>>> s = agreement(np.array([0.1, 0.6, 0.9]), np.array([0.2, 0.4, 0.95]))
>>> s["agree"], round(s["max_abs_diff"], 2)
(0.6667, 0.2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "agreement",
    "average_precision",
    "label_from_failures",
    "latency_summary",
    "quality",
    "roc_auc",
]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties counted half; NaN with one class."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score, dtype=np.float64)[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's `average_precision_score`
    computes it (step-wise, ties grouped); NaN without positives."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s = np.asarray(score, dtype=np.float64)[order]
    hits = y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(hits)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def quality(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), and precision / recall / F1 at `threshold`."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "roc_auc": round(roc_auc(y, score), 5),
        "pr_auc": round(average_precision(y, score), 5),
        "precision": round(precision, 5),
        "recall": round(recall, 5),
        "f1": round(f1, 5),
        "positives": int(y.sum()),
        "rows": len(y),
    }


def agreement(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """How alike two models' scores are: share of rows on the same side of `threshold`,
    mean / max |difference|, Pearson correlation, and each model's alarm rate."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) != len(b) or not len(a):
        raise ValueError(f"agreement needs two equal, non-empty score arrays ({len(a)}, {len(b)})")
    diff = np.abs(a - b)
    corr = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")
    return {
        "rows": len(a),
        "agree": round(float(np.mean((a >= threshold) == (b >= threshold))), 4),
        "mean_abs_diff": round(float(diff.mean()), 6),
        "max_abs_diff": round(float(diff.max()), 6),
        "pearson": round(corr, 5),
        "alarm_rate_a": round(float(np.mean(a >= threshold)), 5),
        "alarm_rate_b": round(float(np.mean(b >= threshold)), 5),
    }


def latency_summary(seconds: Iterable[float], rows: Iterable[int] | None = None) -> dict[str, Any]:
    """p50 / p99 / mean of call latencies in µs, and µs per row when row counts are given."""
    s = np.asarray(list(seconds), dtype=np.float64) * 1e6
    if not len(s):
        return {"calls": 0}
    out: dict[str, Any] = {
        "calls": len(s),
        "p50_us": round(float(np.percentile(s, 50)), 1),
        "p99_us": round(float(np.percentile(s, 99)), 1),
        "mean_us": round(float(s.mean()), 1),
    }
    if rows is not None:
        n = np.asarray(list(rows), dtype=np.float64)
        if len(n) == len(s) and n.sum() > 0:
            out["us_per_row"] = round(float(s.sum() / n.sum()), 2)
    return out


def label_from_failures(
    keys: Sequence[tuple[str, float]],
    failures: Mapping[str, Sequence[float]],
    horizon_s: float,
    *,
    known_until: float | None = None,
) -> np.ndarray:
    """Delayed labels for (device, ts) rows from maintenance failures: 1 when the device fails
    within `horizon_s` after `ts`, 0 otherwise, -1 (unknown yet) for rows later than
    `known_until - horizon_s`: their failure may not have been reported yet.

    >>> label_from_failures([("a", 0.0), ("a", 250.0), ("b", 10.0)], {"a": [300.0]}, 100.0,
    ...                     known_until=105.0).tolist()
    [0, 1, -1]
    """
    out = np.zeros(len(keys), dtype=np.int8)
    for i, (device, ts) in enumerate(keys):
        if any(f - horizon_s <= ts < f for f in failures.get(device, ())):
            out[i] = 1
        elif known_until is not None and ts > known_until - horizon_s:
            out[i] = -1
    return out
