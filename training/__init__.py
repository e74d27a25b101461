"""Offline jobs: train the failure model, evaluate the Scorer on the simulator (the `train` extra).

A top-level package, not part of `models/`: both jobs drive `sim` (the simulator), which the
runtime core must not import (issue #10), and need scikit-learn/skl2onnx, which an edge device
does not install. Imports point down: `training` -> `models`, `sim`, `topics`.
"""
