"""Small demo models trained in-repo (fixed seeds) for the optimizer's tests and benchmark.

`train(name)` fits one of `DEMOS` on synthetic data (sklearn's generators: the simulator's
window features belong to the failure-model trainer), `register_demo(registry, demo)` exports it
with a parity check and registers it with its holdout set. Needs the `train` extra (sklearn).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.models.manifest import ModelManifest
from edgeml.models.optimize.export import export_checked
from edgeml.models.optimize.pipeline import SourceModel
from edgeml.models.registry import ModelRegistry

__all__ = ["DEMOS", "Demo", "register_demo", "train"]

N_FEATURES = 16

DEMOS = {
    "mlp-tiny": "MLPClassifier(32, 16): ~1k params, for fast tests",
    "mlp-40k": "MLPClassifier(256, 128): ~37k params",
    "mlp-400k": "MLPClassifier(512, 512, 256): ~400k params",
    "gbm": "GradientBoostingClassifier(300 trees, depth 3)",
    "gbm-small": "GradientBoostingClassifier(40 trees, depth 3), for fast tests",
    "forest": "RandomForestClassifier(120 trees, depth 10)",
    "mlp-regressor": "MLPRegressor(128, 64): ~10k params",
    "mlp-regressor-tiny": "MLPRegressor(16,), for fast tests",
    "forest-small": "RandomForestClassifier(20 trees, depth 6), for fast tests",
}


@dataclass(slots=True)
class Demo:
    """A fitted demo model with its training rows and a disjoint holdout."""

    name: str
    estimator: Any
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray

    @property
    def inputs(self) -> list[str]:
        return [f"f{i:02d}" for i in range(self.x_train.shape[1])]

    @property
    def n_params(self) -> int:
        est = self.estimator
        if hasattr(est, "coefs_"):
            return int(sum(w.size for w in est.coefs_) + sum(b.size for b in est.intercepts_))
        return 0

    def source(self) -> SourceModel:
        return SourceModel(self.estimator, self.x_train, self.y_train)


def _classification(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=N_FEATURES, n_informative=10, n_redundant=3,
        flip_y=0.03, class_sep=0.9, random_state=seed,
    )  # fmt: skip
    return x.astype(np.float32), y.astype(np.int64)


def train(name: str, *, seed: int = 0, n_train: int = 4000, n_holdout: int = 2000) -> Demo:
    """Fit demo `name` (one of `DEMOS`) with a fixed seed."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose from {', '.join(DEMOS)}")
    n = n_train + n_holdout
    task = "classifier"
    if name.startswith("mlp-regressor"):
        from sklearn.datasets import make_regression

        xr, yr = make_regression(n, N_FEATURES, n_informative=10, noise=40.0, random_state=seed)
        x, y = xr.astype(np.float32), ((yr - yr.mean()) / yr.std()).astype(np.float32)
        task = "regressor"
    else:
        x, y = _classification(n, seed)
    estimators: dict[str, Any] = {
        "mlp-tiny": MLPClassifier((32, 16), max_iter=60, random_state=seed),
        "mlp-40k": MLPClassifier((256, 128), max_iter=40, random_state=seed),
        "mlp-400k": MLPClassifier((512, 512, 256), max_iter=25, random_state=seed),
        "gbm": GradientBoostingClassifier(n_estimators=300, max_depth=3, random_state=seed),
        "gbm-small": GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=seed),
        "forest": RandomForestClassifier(
            n_estimators=120, max_depth=10, random_state=seed, n_jobs=1
        ),
        "mlp-regressor": MLPRegressor(hidden_layer_sizes=(128, 64), max_iter=60, random_state=seed),
        "mlp-regressor-tiny": MLPRegressor(
            hidden_layer_sizes=(16,), max_iter=150, random_state=seed
        ),
        "forest-small": RandomForestClassifier(
            n_estimators=20, max_depth=6, random_state=seed, n_jobs=1
        ),
    }
    est = estimators[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: short, fixed training on purpose
        est.fit(x[:n_train], y[:n_train])
    return Demo(name, est, task, x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def register_demo(
    registry: ModelRegistry, demo: Demo, model_id: str | None = None, *, promote: bool = True
) -> ModelManifest:
    """Export `demo` (parity-checked against sklearn) and register it with its holdout."""
    model_bytes = export_checked(demo.estimator, demo.x_train[:1000])
    with tempfile.TemporaryDirectory() as tmp:
        artifact, holdout = Path(tmp) / "model.onnx", Path(tmp) / "holdout.npz"
        artifact.write_bytes(model_bytes)
        np.savez(holdout, X=demo.x_holdout, y=demo.y_holdout)
        return registry.register(
            model_id or f"demo-{demo.name}",
            artifact,
            kind="onnx",
            inputs=demo.inputs,
            outputs=None,
            training_data=f"zoo.train({demo.name!r}): {DEMOS[demo.name]}, synthetic, seed 0",
            metrics={},
            task="regressor" if demo.task == "regressor" else "classifier",
            holdout=holdout,
            promote=promote,
        )
