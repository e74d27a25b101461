"""Per-reading cost of the ML hot path: features, detectors, river, ONNX, state serialization.

    python bench/bench_models.py            # prints a table of microseconds per reading

Simulated readings (4 metrics, 1 s apart, 32 devices x 600) are replayed through each stage; every
figure is the best of `--repeats` runs (CPU time of this process, so other load on the machine
inflates it less), divided by the number of readings.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np

from edgeml.models.detectors import ResidualDetector, SharedHalfSpaceTrees
from edgeml.models.features import FeatureExtractor
from edgeml.models.scoring import DeviceState, Scorer, ScorerConfig
from edgeml.sim.generator import SimConfig, simulate
from edgeml.topics.records import SensorReading


def _best(fn: Callable[[], int], repeats: int) -> float:
    """Best CPU microseconds per item over `repeats` runs of `fn` (which returns the count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        n = fn()
        best = min(best, (time.process_time() - start) / max(n, 1) * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    sim = simulate(SimConfig(devices=args.devices, count=args.count, seed=5))
    readings = list(sim.readings())
    ids = [d.device_id for d in sim.devices]
    by_device: dict[str, list[SensorReading]] = {d: [] for d in ids}
    for r in readings:
        by_device[r.device_id].append(r)
    rows: list[tuple[str, float, str]] = []

    def features() -> int:
        fx = FeatureExtractor()
        states = {d: fx.new_state() for d in ids}
        for r in readings:
            fx.update(states[r.device_id], r)
        return len(readings)

    rows.append(("features (2 windows x 4 metrics)", _best(features, args.repeats), "per reading"))

    def detectors() -> int:
        det = ResidualDetector()
        states: dict[tuple[str, str], list[float]] = {}
        for r in readings:
            for name, x in r.metrics.items():
                s = states.get((r.device_id, name))
                if s is None:
                    s = states[(r.device_id, name)] = det.new_metric_state(x)
                det.learn_one(s, x, det.score_one(s, x))
        return len(readings)

    rows.append(("residual detectors score+learn (4 metrics)", _best(detectors, args.repeats), ""))

    def hst() -> int:
        model = SharedHalfSpaceTrees()
        det = ResidualDetector()
        evs = [det.score_one(det.new_metric_state(1.0), 1.0)] * 4
        x = model.inputs(evs)
        for _ in readings:
            model.score_one(x)
            model.learn_one(x)
        return len(readings)

    rows.append(("river HalfSpaceTrees score+learn (option)", _best(hst, args.repeats), ""))

    def scorer_run(scorer_factory: Callable[[], Scorer], mode: str) -> Callable[[], int]:
        def run() -> int:
            scorer = scorer_factory()
            states = {d: scorer.new_state(d) for d in ids}
            if mode == "single":
                for r in readings:
                    scorer.score(states[r.device_id], [r])
            elif mode == "device-1":  # a take_events batch: one reading per device
                for i in range(args.count):
                    for d in ids:
                        scorer.score(states[d], by_device[d][i : i + 1])
            elif mode == "many-1":
                for i in range(args.count):
                    scorer.score_many([(states[d], by_device[d][i : i + 1]) for d in ids])
            elif mode == "device-batch":
                for i in range(0, args.count, 16):
                    for d in ids:
                        scorer.score(states[d], by_device[d][i : i + 16])
            else:  # one score_many per 16 readings of every device
                for i in range(0, args.count, 16):
                    scorer.score_many([(states[d], by_device[d][i : i + 16]) for d in ids])
            return len(readings)

        return run

    no_onnx = lambda: Scorer()  # noqa: E731
    with_onnx = Scorer  # the promoted failure model, when registered
    has_onnx = with_onnx().failure_model is not None
    rows.append(
        ("Scorer.score, 1 reading/call, no ONNX", _best(scorer_run(no_onnx, "single"), 2), "")
    )
    if has_onnx:
        for mode in ("single", "device-1", "many-1", "device-batch", "many"):
            label = {
                "single": "Scorer.score, 1 reading/call, ONNX",
                "device-1": f"Scorer.score x {len(ids)} devices x 1 reading, ONNX",
                "many-1": f"Scorer.score_many, {len(ids)} devices x 1 reading, ONNX",
                "device-batch": "Scorer.score, 16 readings/call, ONNX",
                "many": f"Scorer.score_many, {len(ids)} devices x 16, ONNX",
            }[mode]
            rows.append((label, _best(scorer_run(with_onnx, mode), 2), ""))
        model = with_onnx().failure_model
        assert model is not None
        width = len(with_onnx().failure_inputs.names)
        x = np.random.default_rng(0).normal(size=(512, width)).astype(np.float32)
        for batch in (1, 16, 64, 512):
            chunks = [x[i : i + batch] for i in range(0, 512, batch)]

            def onnx_run(chunks: list[np.ndarray] = chunks) -> int:
                for _ in range(4):
                    for c in chunks:
                        model.predict(c)
                return 4 * 512

            rows.append(
                (f"ONNX failure model, batch {batch}", _best(onnx_run, args.repeats), "/row")
            )
    scorer = Scorer(ScorerConfig())
    state = scorer.new_state(ids[0])
    scorer.score(state, by_device[ids[0]])
    blob = state.to_bytes()

    def ser() -> int:
        for _ in range(200):
            DeviceState.from_bytes(state.to_bytes())
        return 200

    rows.append(("DeviceState to_bytes+from_bytes", _best(ser, args.repeats), f"{len(blob)} B"))
    print(f"machine: {platform.machine()} {platform.processor() or ''}".strip())
    print(f"{'stage':48s} {'us':>9s}")
    for name, us, note in rows:
        print(f"{name:48s} {us:9.1f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
