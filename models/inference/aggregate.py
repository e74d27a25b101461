"""Combining several backends' answers for one call: weighted mean, max, majority vote, stacking.

Every combiner takes the answers that arrived (backend name -> (n,) scores) and the weights
by backend name or model ref, and returns (n,) float64. `vote` thresholds each backend's score
at `threshold` and returns 1.0 where the weighted positive votes are at least half of the
weight that voted, else 0.0: a tie goes to "positive", the cautious side for failure risk.
`stack` is a logistic regression over the backends' logits learned online from delayed labels
(`models.inference.stacking.Stacker`, one per task pool: `new_stacker`); combined without one
(or before any label) it is the weighted mean of the logits.

>>> answers = {"a": np.array([0.2, 0.9]), "b": np.array([0.4, 0.1])}
>>> Aggregation("mean").combine(answers).tolist()
[0.30000000000000004, 0.5]
>>> Aggregation("max").combine(answers).tolist()
[0.4, 0.9]
>>> Aggregation("vote", weights={"a": 2.0}).combine(answers).tolist()
[0.0, 1.0]
>>> Aggregation("stack").combine(answers).round(4).tolist()
[0.2899, 0.5]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgeml.models.inference.stacking import Stacker, logit

__all__ = ["AGGREGATIONS", "Aggregation"]

AGGREGATIONS = ("mean", "max", "vote", "stack")
Method = Literal["mean", "max", "vote", "stack"]


@dataclass(frozen=True, slots=True)
class Aggregation:
    """How to combine answers: `method`, `weights` (by backend name, then model ref; others
    weigh 1), the vote `threshold`, and how many answers a result needs (`min_answers`)."""

    method: Method = "mean"
    weights: Mapping[str, float] = field(default_factory=dict)
    threshold: float = 0.5
    min_answers: int = 1

    def __post_init__(self) -> None:
        if self.method not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.method!r}; choose one of: {', '.join(AGGREGATIONS)}"
            )
        if self.min_answers < 1 or any(w < 0 for w in self.weights.values()):
            raise ValueError("min_answers must be >= 1 and weights >= 0")

    def weight(self, name: str, model_ref: str = "") -> float:
        w = self.weights.get(name)
        if w is None:
            w = self.weights.get(model_ref, 1.0)
        return float(w)

    def new_stacker(self, names: Sequence[str], refs: Sequence[str] = ()) -> Stacker:
        """A cold `Stacker` over the backends `names` (their model `refs` for the weights),
        starting from the weighted mean of their logits."""
        refs = list(refs) or [""] * len(names)
        prior = [self.weight(n, r) for n, r in zip(names, refs, strict=True)]
        return Stacker(names, prior=prior)

    def combine(
        self,
        answers: Mapping[str, np.ndarray],
        refs: Mapping[str, str] | None = None,
        *,
        stacker: Stacker | None = None,
    ) -> np.ndarray:
        """(n,) combined scores; `refs` maps backend names to model refs for the weights;
        `stacker`: the task's learned stacker (`stack` only; without: the logit-mean)."""
        if not answers:
            raise ValueError("nothing to combine")
        if self.method == "stack" and stacker is not None:
            return stacker.combine(answers)
        refs = refs or {}
        names = list(answers)
        stack = np.stack([np.asarray(answers[n], dtype=np.float64).reshape(-1) for n in names])
        if self.method == "max":
            return np.asarray(stack.max(axis=0))
        w = np.array([self.weight(n, refs.get(n, "")) for n in names], dtype=np.float64)
        total = float(w.sum())
        if total <= 0.0:  # every answer weighs 0: count them equally rather than divide by 0
            w, total = np.ones(len(names)), float(len(names))
        if self.method == "mean":
            return np.asarray((w[:, None] * stack).sum(axis=0) / total)
        if self.method == "stack":  # cold: the weighted mean of the logits
            z = (w[:, None] * logit(stack)).sum(axis=0) / total
            return np.asarray(1.0 / (1.0 + np.exp(-z)))
        positive = (w[:, None] * (stack >= self.threshold)).sum(axis=0)
        return np.where(positive * 2.0 >= total, 1.0, 0.0)
