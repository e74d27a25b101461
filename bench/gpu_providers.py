"""GPU execution providers check, for a machine with an NVIDIA GPU (not run in CI: none here).

    python -m venv .cache/venv-gpu && .cache/venv-gpu/bin/pip install onnxruntime-gpu numpy \\
        orjson aiohttp onnx          # onnxruntime-gpu replaces onnxruntime: its own venv
    PYTHONPATH=. .cache/venv-gpu/bin/python bench/gpu_providers.py [--json gpu.json]

Runs `bench/providers.py` on CUDA alone and on TensorRT then CUDA (CPU last, as always) for
every registry model plus `mlp-probe` (a random MLP every GPU provider takes whole; the
shipped GBM is an `ai.onnx.ml` tree ensemble, which runs on CPU under any provider list) and
prints per case the session's providers, node placement, single-row p50/p99 µs, batch-64
rows/s and max |score - CPU score|. Exit 0 only when CUDA and TensorRT each ran nodes and
every score matched CPU within `--atol` (default 1e-4: GPU kernels reorder float sums; TF32
is off by default for CUDA EP matmuls in recent ORT, a TensorRT fp16 engine would need more).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from providers import main as providers_main


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"GPU: {smi.stdout.strip() or smi.stderr.strip()}")
    else:
        print("GPU: nvidia-smi not found (the providers will fall back to CPU)")
    atol = [] if "--atol" in extra else ["--atol", "1e-4"]
    wishes = ["--providers", "cuda", "--providers", "tensorrt,cuda"]
    return providers_main([*wishes, "--with-mlp", "--check", "--require", *atol, *extra])


if __name__ == "__main__":
    raise SystemExit(main())
