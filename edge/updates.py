"""Signed model updates on the device: verify, stage, golden-check, swap between batches, watch a
health window, roll back on failure.

`ModelSlot` is the failure model the `Scorer` calls (`ref`, `predict`, `current`). Scoring runs on
the event loop (`BatchRunner.run` is synchronous), and `ModelSlot.swap` runs on that loop too, so a
swap always falls between two batches: a batch is scored by one version from start to end, and
no reading is left unscored (the slot never drops a call: during the health window a row the new
model fails on, by raising or by answering NaN/inf, is scored by the previous model instead and
counted against the new one).

`ModelUpdater.stage` (in a thread: hashing, writing and loading a model must not hold up scoring)
takes an announcement and its bundle (`edge.bundle`) and refuses, with one ERROR line and
`edgeml_edge_model_refused_total{reason}`:

- `invalid`: not a bundle, another version than announced, no golden set, inputs that differ;
- `unsigned` / `bad_signature`: no signature, or one the device's public key does not verify
  (the signature covers the manifest and the golden set: `edge.signing`);
- `tampered`: the manifest's sha256 is not the announced one, or the model bytes do not hash to
  the manifest's (the registry's own check on load);
- `golden`: the loaded model's answers on the golden set shipped with it differ from the
  verified model's (`models.inference.health.GoldenSet.check`, atol 1e-5): a model that does not
  run correctly on this device's onnxruntime never serves a reading.

After the swap, `after_batch` watches `model_health_batches` batches: more than
`model_max_bad_fraction` failed rows rolls back at once; at the end of the window, a mean failure
probability further than `model_max_drift` from the previous model's over its last window rolls
back too (a model that passes its golden set but answers differently on this fleet's data); else
the version is kept and promoted in the device's own registry (`model_store`), so a restart,
offline, scores with it. A rolled-back version is remembered in the database and not taken again.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeml.edge.bundle import BadBundle, Bundle, unpack
from edgeml.edge.db import get_meta, set_meta, transaction
from edgeml.edge.errors import EdgeError
from edgeml.edge.metrics import REFUSE_REASONS, EdgeMetrics
from edgeml.edge.signing import GOLDEN, UntrustedModel, read_golden, sha256, verify_version
from edgeml.models.manifest import (
    ModelAnnouncement,
    ModelManifest,
    RegistryError,
    TamperedArtifact,
)
from edgeml.models.registry import FAILURE_MODEL_ID, LoadedModel, ModelRegistry

__all__ = ["REFUSE_REASONS", "HealthWindow", "ModelRefused", "ModelSlot", "ModelUpdater"]

log = logging.getLogger("edgeml.edge")


class ModelRefused(EdgeError):
    """A model version the agent will not serve; `reason` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class HealthWindow:
    """What the swapped-in model did since the swap."""

    baseline: float | None  # the previous model's mean score over its last window
    batches: int = 0
    rows: int = 0
    bad_rows: int = 0
    total: float = 0.0  # sum of the finite scores
    last_error: str = ""

    @property
    def mean(self) -> float | None:
        good = self.rows - self.bad_rows
        return self.total / good if good else None


class ModelSlot:
    """The failure model the scorer calls; swaps happen between batches (module docstring)."""

    def __init__(self, model: LoadedModel | None, window_batches: int = 20) -> None:
        self._model = model  # None: no trusted model yet (an update may bring the first)
        self.previous: LoadedModel | None = None
        self.window: HealthWindow | None = None
        # (rows, sum of scores) of the last calls: the baseline a new model is compared with
        self._recent: deque[tuple[int, float]] = deque(maxlen=max(window_batches, 1) * 8)

    @property
    def current(self) -> LoadedModel:
        if self._model is None:
            raise EdgeError("no failure model is served")
        return self._model

    @property
    def empty(self) -> bool:
        return self._model is None

    @property
    def ref(self) -> str:
        return "none" if self._model is None else self._model.manifest.ref

    def _fallback(self, features: np.ndarray) -> np.ndarray:
        if self.previous is None:  # the first model failed: the scorer maps NaN to 0
            return np.full(len(features), np.nan)
        return np.asarray(self.previous.predict(features), dtype=np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        window = self.window
        if window is None:
            out = np.asarray(self.current.predict(features), dtype=np.float64)
            finite = out[np.isfinite(out)]
            self._recent.append((len(finite), float(finite.sum())))
            return out
        rows = len(features)
        try:
            out = np.asarray(self.current.predict(features), dtype=np.float64)
            if out.shape != (rows,):
                raise ValueError(f"{out.shape} scores for {rows} rows")
        except Exception as exc:  # the new model fails: this call is scored by the previous one
            window.rows += rows
            window.bad_rows += rows
            window.last_error = f"{type(exc).__name__}: {exc}"
            return self._fallback(features)
        bad = ~np.isfinite(out)
        n_bad = int(bad.sum())
        window.rows += rows
        window.bad_rows += n_bad
        window.total += float(out[~bad].sum())
        if n_bad:
            window.last_error = f"{n_bad} non-finite score(s) of {rows}"
            out = np.where(bad, self._fallback(features), out)
        return out

    def swap(self, new: LoadedModel) -> None:
        """Serve `new` from the next call on, watching it; the current one stays as fallback."""
        rows = sum(n for n, _ in self._recent)
        baseline = sum(s for _, s in self._recent) / rows if rows else None
        self.previous, self._model = self._model, new
        self.window = HealthWindow(baseline)
        self._recent.clear()

    def keep(self) -> None:
        self.previous, self.window = None, None

    def rollback(self) -> LoadedModel:
        """Serve the previous model again (or none); returns the one rolled back."""
        bad, self._model = self.current, self.previous
        self.previous, self.window = None, None
        return bad


class ModelUpdater:
    """Takes announced, signed versions into the slot and judges their health window."""

    def __init__(
        self,
        slot: ModelSlot,
        store: Path,
        public_key: bytes,
        conn: sqlite3.Connection,
        metrics: EdgeMetrics,
        *,
        inputs: tuple[str, ...],
        attach: Callable[[ModelSlot | None], None] = lambda slot: None,
        window_batches: int = 20,
        max_drift: float = 0.25,
        max_bad_fraction: float = 0.0,
        threads: int = 1,
    ) -> None:
        self.slot = slot
        self.inputs = inputs  # the features the scorer builds: every version must take them
        self.attach = attach  # gives the scorer the slot once it holds a model (None: empty)
        self.registry = ModelRegistry(store, threads=threads)
        self.public_key = public_key
        self.conn = conn
        self.metrics = metrics
        self.window_batches = window_batches
        self.max_drift = max_drift
        self.max_bad_fraction = max_bad_fraction
        self._judged: set[tuple[str, str, str]] = set()  # (version, sha256, bundle sha256)

    @property
    def model_id(self) -> str:
        return FAILURE_MODEL_ID if self.slot.empty else self.slot.current.manifest.model_id

    @property
    def busy(self) -> bool:
        """A health window is running: the next version waits for its verdict."""
        return self.slot.window is not None

    def wants(self, announcement: ModelAnnouncement) -> bool:
        """Is this announcement a version to take (this model, not served, not rolled back)?"""
        if announcement.model_id != self.model_id:
            return False
        if not self.slot.empty:
            current = self.slot.current.manifest
            if (announcement.version, announcement.sha256) == (current.version, current.sha256):
                return False
        return get_meta(self.conn, _rejected_key(announcement)) is None

    def judged(self, announcement: ModelAnnouncement, bundle: bytes) -> bool:
        """Was this very bundle already refused by this process? (The compacted topics are read
        again after each reconnect: one refusal is logged and counted once.)"""
        return (announcement.version, announcement.sha256, sha256(bundle)) in self._judged

    # --- staging (in a thread) ----------------------------------------------------------------
    def stage(self, announcement: ModelAnnouncement, data: bytes) -> LoadedModel:
        """Verify, write and load the announced version (module docstring); raises
        `ModelRefused`. Touches neither the slot nor the database: safe off the loop."""
        self._judged.add((announcement.version, announcement.sha256, sha256(data)))
        try:
            bundle = unpack(data)
        except BadBundle as exc:
            raise ModelRefused("invalid", str(exc)) from None
        if (bundle.model_id, bundle.version) != (announcement.model_id, announcement.version):
            raise ModelRefused("invalid", f"the bundle is {bundle.ref}, not the announced one")
        model_dir = self.registry.root / bundle.model_id
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        try:
            return self._stage(announcement, bundle, staging, model_dir / bundle.version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _stage(
        self, announcement: ModelAnnouncement, bundle: Bundle, staging: Path, final: Path
    ) -> LoadedModel:
        bundle.write(staging)
        try:
            verify_version(staging, self.public_key)
        except UntrustedModel as exc:
            raise ModelRefused(exc.reason, str(exc)) from None
        try:
            manifest = ModelManifest.from_json((staging / "manifest.json").read_text())
        except (RegistryError, ValueError, KeyError, TypeError) as exc:
            raise ModelRefused("invalid", f"unreadable manifest: {exc}") from None
        if manifest.ref != bundle.ref:
            raise ModelRefused("invalid", f"the manifest describes {manifest.ref}")
        if manifest.sha256 != announcement.sha256:
            raise ModelRefused(
                "tampered",
                f"announced sha256 {announcement.sha256[:12]}, the manifest says "
                f"{manifest.sha256[:12]}",
            )
        if not (staging / GOLDEN).is_file():
            raise ModelRefused("invalid", f"no golden set ({GOLDEN}) shipped with the model")
        if not self.slot.empty and final.resolve() == self.slot.current.path.resolve():
            raise ModelRefused("invalid", f"{bundle.ref} is served already, with other bytes")
        shutil.rmtree(final, ignore_errors=True)  # an earlier, never kept download
        os.rename(staging, final)
        try:
            model = self.registry.load(
                manifest.model_id, manifest.version, expected_inputs=self.inputs
            )
            golden = read_golden(final / GOLDEN)
            try:
                scores = np.asarray(model.predict(next(iter(golden.inputs.values()))))
            except Exception as exc:
                raise ModelRefused("golden", f"fails on its golden set: {exc}") from None
            reason = golden.check({"score": scores}, "score")
            if reason is not None:
                raise ModelRefused("golden", reason)
        except TamperedArtifact as exc:
            shutil.rmtree(final, ignore_errors=True)
            raise ModelRefused("tampered", str(exc)) from None
        except RegistryError as exc:
            shutil.rmtree(final, ignore_errors=True)
            raise ModelRefused("invalid", str(exc)) from None
        except (OSError, ValueError, KeyError) as exc:
            shutil.rmtree(final, ignore_errors=True)
            raise ModelRefused("invalid", f"unreadable golden set: {exc}") from None
        except ModelRefused:
            shutil.rmtree(final, ignore_errors=True)
            raise
        return model

    # --- on the loop --------------------------------------------------------------------------
    def refused(self, announcement: ModelAnnouncement, exc: ModelRefused) -> None:
        self.metrics.models_refused[exc.reason] = self.metrics.models_refused.get(exc.reason, 0) + 1
        log.error(
            "refusing model %s@%s (%s: %s): still scoring with %s",
            announcement.model_id, announcement.version, exc.reason, exc, self.slot.ref,
        )  # fmt: skip

    def begin(self, model: LoadedModel) -> None:
        """Swap `model` in (between batches: this runs on the scoring loop)."""
        old, was_empty = self.slot.ref, self.slot.empty
        self.slot.swap(model)
        if was_empty:
            self.attach(self.slot)
        self.metrics.model_swaps += 1
        log.info(
            "model %s swapped in (was %s); watching %d batches",
            model.manifest.ref, old, self.window_batches,
        )  # fmt: skip

    def after_batch(self) -> None:
        """Called after every committed batch: counts it into the health window and gives the
        verdict (keep or roll back) as soon as there is one."""
        window = self.slot.window
        if window is None:
            return
        window.batches += 1
        if window.rows and window.bad_rows / window.rows > self.max_bad_fraction:
            self._rollback(f"{window.bad_rows} of {window.rows} rows failed ({window.last_error})")
            return
        if window.batches < self.window_batches:
            return
        mean = window.mean
        if window.baseline is not None and mean is not None:
            drift = abs(mean - window.baseline)
            if drift > self.max_drift:
                self._rollback(
                    f"mean failure probability {mean:.3f} vs {window.baseline:.3f} before "
                    f"(drift {drift:.3f} > {self.max_drift})"
                )
                return
        self._keep()

    def _keep(self) -> None:
        manifest = self.slot.current.manifest
        self.slot.keep()
        try:
            self.registry.promote(manifest.model_id, manifest.version)
        except (RegistryError, OSError) as exc:  # still served; a restart uses the older one
            log.warning("could not promote %s in the device registry: %s", manifest.ref, exc)
        self.metrics.model_kept += 1
        log.info("model %s passed its health window; kept", manifest.ref)

    def _rollback(self, why: str) -> None:
        bad = self.slot.rollback()
        if self.slot.empty:
            self.attach(None)
        announcement = ModelAnnouncement.of(bad.manifest)
        with transaction(self.conn):
            set_meta(self.conn, _rejected_key(announcement), why)
        self.metrics.model_rollbacks += 1
        log.error(
            "model %s failed its health window (%s): rolled back to %s",
            bad.manifest.ref, why, self.slot.ref,
        )  # fmt: skip


def _rejected_key(announcement: ModelAnnouncement) -> str:
    return f"model_rejected:{announcement.model_id}@{announcement.version}:{announcement.sha256}"
