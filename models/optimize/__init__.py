"""`edgeml optimize`: shrink and speed up registered models, measuring every step.

`optimize(registry, model_id)` runs the chosen steps (dynamic/static int8, float16, pruning,
tree compaction, offline graph optimization, zstd) on the holdout set the trainer registered and
returns an `OptimizationReport`; `export` holds the sklearn -> ONNX helpers (with denormal
scrubbing and a parity check) that trainers and the optimizer share.
"""
