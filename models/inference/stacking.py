"""Stacking learned online from delayed labels: a logistic regression over the members' logits.

`Stacker` combines several backends' scores for the same rows as

    p = sigmoid(b + sum_i w_i * logit(clip(p_i, 1e-6, 1 - 1e-6)))

and learns `w` and `b` from (member scores, label) rows as delayed labels arrive (`learn`).
Before any label it is the (weighted) mean of the logits: `w` = the prior weights normalised
to sum 1 (equal by default), `b` = 0, so a cold stacker is a safe aggregation, not a guess.

Learning is a MAP fit with a Gaussian prior centred on that logit-mean: the loss is the
weighted log-loss of the labelled rows kept plus `l2 / 2 * |theta - theta_prior|^2`, minimised
by a few damped Newton (IRLS) steps warm-started from the current weights. With few labels the
prior dominates (the stacker stays near the logit-mean); with many the data does.

Bounded memory: the labelled rows kept are a uniform sample (reservoir) of at most `capacity`
positives and one of at most `capacity` negatives (logit rows). Failures are rare, so one
sample of all rows would hold almost no positives; each kept row weighs (rows of its class
seen) / (rows of its class kept), so the class balance of everything seen, and hence the
calibration, is kept. A uniform sample, not the most recent rows: the recent negatives of a
fleet are a few minutes of strongly correlated rows, and fitting on them swung the bias by
several units between refits (`bench/ensemble.py`: pooled prequential ROC AUC 0.70 vs 0.85).
A refit runs once `refit_every` labels have arrived since the last (at every label while
fewer than `refit_every` rows are kept), so a flood of negatives costs one small fit per
`refit_every` rows, not one per row; and none before `min_positives` positives and
`min_negatives` negatives are kept (`ready`): fitted on negatives alone, as the first minutes
of a fleet without a failure are, the weights would only learn to push every score down.

Missing members (a backend that did not answer this call) are imputed with the mean of the
present members' logits, for combining and for learning alike; names the stacker was not
built with are ignored (all unknown: the plain logit-mean of what answered).

Threads: `combine` reads one immutable snapshot of the weights (replaced whole by a refit, never
changed in place) and takes no lock; `learn`, `to_dict` and `from_dict` serialise on a lock. The
engine combines on its loop thread while the worker feeds labels from its own.

>>> s = Stacker(["a", "b"])
>>> answers = {"a": np.array([0.9, 0.2]), "b": np.array([0.5, 0.2])}
>>> s.combine(answers).round(4).tolist()  # cold: the logit-mean
[0.75, 0.2]
>>> s.weights, s.labels_seen
({'a': 0.5, 'b': 0.5}, 0)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["EPS", "Stacker", "logit"]

EPS = 1e-6  # scores are clipped to [EPS, 1 - EPS] before the logit: |logit| <= 13.8
_Z_LIMIT = 50.0  # the combined logit is clipped here: sigmoid stays finite and in [0, 1]


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of `p` clipped to [EPS, 1 - EPS] (NaN stays NaN)."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -_Z_LIMIT, _Z_LIMIT))))


class _Reservoir:
    """A uniform sample of at most `capacity` of the rows ever added (Algorithm R), the
    random draws seeded by the count seen so far: the same rows in, the same sample, and a
    restored reservoir continues as the original would."""

    __slots__ = ("data", "filled", "represented", "seed", "seen")

    def __init__(self, capacity: int, width: int, seed: int) -> None:
        self.data = np.zeros((capacity, width))
        self.filled = 0
        self.seen = 0  # rows ever added
        self.represented = 0  # rows the kept ones stand for (seen, unless restored without)
        self.seed = seed

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        cap = len(self.data)
        take = min(cap - self.filled, len(rows))
        self.data[self.filled : self.filled + take] = rows[:take]
        self.filled += take
        rest = rows[take:]
        if len(rest):  # row number t (0-based) replaces a random kept one with p = cap / (t + 1)
            t = self.seen + take + np.arange(len(rest))
            rng = np.random.default_rng([self.seed, self.seen])
            slot = (rng.random(len(rest)) * (t + 1)).astype(np.int64)
            for i in np.flatnonzero(slot < cap):  # in order: a later row overwrites an earlier
                self.data[slot[i]] = rest[i]
        self.seen += len(rows)
        self.represented += len(rows)

    def rows(self) -> np.ndarray:
        return self.data[: self.filled]


class Stacker:
    """Online stacking over the logits of `members` (module docstring).

    `prior`: the cold-start weight of each member (normalised to sum 1; default equal), also
    the centre the L2 penalty `l2` pulls towards. `capacity`: labelled rows kept per class
    (a uniform sample).
    `refit_every`: labels between refits. `newton_steps`: damped Newton steps per refit."""

    def __init__(
        self,
        members: Sequence[str],
        *,
        prior: Sequence[float] | None = None,
        l2: float = 1.0,
        capacity: int = 2048,
        refit_every: int = 16,
        newton_steps: int = 3,
        min_positives: int = 5,
        min_negatives: int = 20,
    ) -> None:
        names = [str(m) for m in members]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a stacker needs distinct member names, got {names}")
        if l2 <= 0 or capacity < 1 or refit_every < 1 or newton_steps < 1:
            raise ValueError("l2 must be > 0; capacity, refit_every and newton_steps >= 1")
        w0 = np.ones(len(names)) if prior is None else np.asarray(prior, dtype=np.float64)
        if w0.shape != (len(names),) or not np.all(np.isfinite(w0)) or np.any(w0 < 0):
            raise ValueError(f"prior must be {len(names)} finite weights >= 0")
        if w0.sum() <= 0:
            w0 = np.ones(len(names))
        self.members = tuple(names)
        self.l2 = float(l2)
        self.capacity = int(capacity)
        self.refit_every = int(refit_every)
        self.newton_steps = int(newton_steps)
        self.min_positives = int(min_positives)
        self.min_negatives = int(min_negatives)
        self._index = {n: i for i, n in enumerate(self.members)}
        # theta = (w_1 .. w_k, b); rows are (logit_1 .. logit_k, 1)
        self._prior = np.append(w0 / w0.sum(), 0.0)
        self._prior.setflags(write=False)
        self._theta = self._prior
        self._pos = _Reservoir(self.capacity, len(self.members) + 1, seed=1)
        self._neg = _Reservoir(self.capacity, len(self.members) + 1, seed=0)
        self._pending = 0
        self.refits = 0
        self._lock = threading.Lock()

    # -- what it learned ------------------------------------------------------------------------

    @property
    def weights(self) -> dict[str, float]:
        """Each member's weight on its logit now."""
        theta = self._theta
        return {n: float(theta[i]) for i, n in enumerate(self.members)}

    @property
    def bias(self) -> float:
        return float(self._theta[-1])

    @property
    def positives(self) -> int:
        return self._pos.seen

    @property
    def negatives(self) -> int:
        return self._neg.seen

    @property
    def labels_seen(self) -> int:
        return self._pos.seen + self._neg.seen

    def summary(self) -> dict[str, Any]:
        """What `/status` shows: weights, bias, labels seen by class, refits."""
        return {
            "weights": {n: round(w, 4) for n, w in self.weights.items()},
            "bias": round(self.bias, 4),
            "labels": self.labels_seen,
            "positives": self.positives,
            "refits": self.refits,
        }

    # -- combining ------------------------------------------------------------------------------

    def features(self, answers: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, k + 1) rows: each member's logit (missing ones imputed with the mean of the
        present ones) and a 1 for the bias. Raises when no known member answered."""
        known = [(self._index[n], a) for n, a in answers.items() if n in self._index]
        if not known:
            raise ValueError(
                f"none of {sorted(answers)} is a member of this stacker {list(self.members)}"
            )
        cols = [logit(np.asarray(a, dtype=np.float64).reshape(-1)) for _, a in known]
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError("member answers disagree on the row count")
        x = np.empty((n, len(self.members) + 1))
        x[:, -1] = 1.0
        if len(known) < len(self.members):
            x[:, :-1] = np.mean(cols, axis=0)[:, None]
        for (i, _), c in zip(known, cols, strict=True):
            x[:, i] = c
        return x

    def combine(self, answers: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n,) combined scores in [0, 1] (module docstring); lock-free."""
        known = {n: a for n, a in answers.items() if n in self._index}
        if not known:  # nobody it knows answered: the plain mean of the logits that did
            if not answers:
                raise ValueError("nothing to combine")
            cols = [logit(np.asarray(a, dtype=np.float64).reshape(-1)) for a in answers.values()]
            return _sigmoid(np.mean(cols, axis=0))
        return _sigmoid(self.features(known) @ self._theta)

    # -- learning -------------------------------------------------------------------------------

    def learn(self, answers: Mapping[str, np.ndarray], labels: Sequence[bool] | np.ndarray) -> int:
        """Learn from labelled rows: `answers` (backend name -> (n,) scores of the members for
        those rows) and their `labels` (n,). Returns the rows learned (0 when no known member
        answered: nothing to learn from). Refits when enough labels have arrived."""
        y = np.asarray(labels).astype(bool).reshape(-1)
        if not len(y):
            return 0
        known = {n: a for n, a in answers.items() if n in self._index}
        if not known:
            return 0
        x = self.features(known)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} rows of scores for {len(y)} labels")
        ok = np.all(np.isfinite(x), axis=1)  # a NaN score teaches nothing
        x, y = x[ok], y[ok]
        with self._lock:
            self._pos.add(x[y])
            self._neg.add(x[~y])
            self._pending += len(y)
            kept = self._pos.filled + self._neg.filled
            if self._pending >= min(self.refit_every, max(1, kept // 16)):
                self._refit()
        return len(y)

    def refit(self) -> None:
        """Refit now on the rows kept (`learn` does when enough labels arrived)."""
        with self._lock:
            self._refit()

    @property
    def ready(self) -> bool:
        """Whether both classes have been seen enough to fit (before: the prior, as cold)."""
        return self._pos.filled >= self.min_positives and self._neg.filled >= self.min_negatives

    def _refit(self) -> None:
        if not self.ready:  # negatives alone (failures are rare) would only push the bias down
            return
        self._pending = 0
        parts = [
            (r.rows(), r.represented / r.filled, label)
            for r, label in ((self._pos, 1.0), (self._neg, 0.0))
            if r.filled
        ]
        if not parts:
            return
        x = np.concatenate([p[0] for p in parts])
        s = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
        y = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
        prior, l2 = self._prior, self.l2
        theta = self._theta.copy()

        def loss(t: np.ndarray) -> float:
            z = np.clip(x @ t, -_Z_LIMIT, _Z_LIMIT)
            # log(1 + e^z) - y z, stably
            nll = np.logaddexp(0.0, z) - y * z
            return float(s @ nll + 0.5 * l2 * np.sum((t - prior) ** 2))

        current = loss(theta)
        eye = np.eye(len(theta))
        for _ in range(self.newton_steps):
            p = _sigmoid(x @ theta)
            grad = x.T @ (s * (p - y)) + l2 * (theta - prior)
            hess = (x * (s * p * (1.0 - p))[:, None]).T @ x + l2 * eye
            try:
                step = np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                break
            t, moved = 1.0, False
            for _ in range(20):  # damped: halve the step until the loss does not rise
                cand = theta - t * step
                value = loss(cand)
                if np.isfinite(value) and value <= current:
                    theta, current, moved = cand, value, True
                    break
                t *= 0.5
            if not moved or float(np.max(np.abs(t * step))) < 1e-8:
                break
        if np.all(np.isfinite(theta)):
            theta.setflags(write=False)
            self._theta = theta  # one reference swap: `combine` sees old or new, never half
            self.refits += 1

    # -- state ----------------------------------------------------------------------------------

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        """JSON-able state; with `rows` the labelled rows kept too, so learning resumes where
        it stopped (without: the weights and counts only, a few hundred bytes)."""
        with self._lock:
            out: dict[str, Any] = {
                "version": 1,
                "members": list(self.members),
                "prior": self._prior[:-1].tolist(),
                "theta": self._theta.tolist(),
                "l2": self.l2,
                "capacity": self.capacity,
                "refit_every": self.refit_every,
                "newton_steps": self.newton_steps,
                "min_positives": self.min_positives,
                "min_negatives": self.min_negatives,
                "seen": [self._pos.seen, self._neg.seen],
                "represented": [self._pos.represented, self._neg.represented],
                "refits": self.refits,
            }
            if rows:
                out["pos"] = self._pos.rows().tolist()
                out["neg"] = self._neg.rows().tolist()
            return out

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Stacker:
        if state.get("version") != 1:
            raise ValueError(f"unknown stacker state version {state.get('version')!r}")
        s = cls(
            state["members"],
            prior=state["prior"],
            l2=state["l2"],
            capacity=state["capacity"],
            refit_every=state["refit_every"],
            newton_steps=state["newton_steps"],
            min_positives=state.get("min_positives", 5),
            min_negatives=state.get("min_negatives", 20),
        )
        theta = np.asarray(state["theta"], dtype=np.float64)
        if theta.shape != s._theta.shape or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta must be {len(s._theta)} finite numbers")
        theta.setflags(write=False)
        s._theta = theta
        width = len(s.members) + 1
        seen = state["seen"]
        represented = state.get("represented", seen)
        for i, (kept_rows, key) in enumerate(((s._pos, "pos"), (s._neg, "neg"))):
            kept = np.asarray(state.get(key, []), dtype=np.float64).reshape(-1, width)
            kept = kept[: s.capacity]
            kept_rows.data[: len(kept)] = kept
            kept_rows.filled = len(kept)
            kept_rows.seen = max(int(seen[i]), len(kept))
            # without its rows the counts are reported but do not weigh the rows learned next
            kept_rows.represented = max(int(represented[i]), len(kept)) if len(kept) else 0
        s.refits = int(state.get("refits", 0))
        return s
