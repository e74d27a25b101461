"""Per-step cost of the pipeline, in microseconds per reading, single and batched.

    python -m bench.steps [--quick] [--no-produce]

In-process (no worker): each step of `models.pipeline` is timed on simulated readings, as CPU
time of this process (best of `--repeats`), so other load on the machine inflates it less.
*single* = every message holds one reading and every reading is of another device (a fleet of
devices each sending its own readings); *batched* = messages of 100 readings of one device.

Steps: validation (`parse_message`), feature update, online anomaly scoring + learning
(detectors, adaptive threshold, alerts; derived: scorer without ONNX minus features), ONNX
failure-model inference (per call of 1, 100 or 500 rows), the whole `Scorer.score_many` as the
worker calls it, device-state save (`to_bytes`) and load (`from_bytes`), prediction
serialization, `ReadingPipeline.process` end to end, and producing to the real broker (aiokafka,
acks=all; wall and CPU time). Faust's own per-message cost is B's figure in the ladder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from bench.common import (
    BenchEnv,
    add_options,
    best_cpu_us,
    cleanup,
    create_topics,
    emit,
    env_from_args,
    print_json,
    versions,
)

__all__ = ["main", "steps_command"]

BATCH = 100


class _DictStore:
    """`StateStore` over a dict of bytes with the worker's decoded-state cache."""

    def __init__(self) -> None:
        from edgeml.models.scoring import DeviceState

        self.table: dict[str, bytes] = {}
        self.cache: dict[str, tuple[bytes, DeviceState]] = {}
        self._from_bytes = DeviceState.from_bytes

    def load(self, device_id: str, origin: int) -> Any:
        raw = self.table.get(device_id)
        if raw is None:
            return None
        cached = self.cache.get(device_id)
        if cached is not None and cached[0] is raw:
            return cached[1]
        return self._from_bytes(raw)

    def save(self, device_id: str, state: Any, origin: int) -> None:
        raw = state.to_bytes()
        self.table[device_id] = raw
        self.cache[device_id] = (raw, state)


def steps_command(env: BenchEnv | None, *, repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    from edgeml.models.pipeline import Inbound, ReadingPipeline
    from edgeml.models.registry import load_promoted
    from edgeml.models.scoring import DeviceState, Scorer
    from edgeml.models.shipped import SHIPPED_ROOT
    from edgeml.models.validation import ValidationLimits, parse_message
    from edgeml.sim.generator import SimConfig, simulate
    from edgeml.topics.records import Prediction

    devices = 100 if quick else 500
    warm, timed = 120, BATCH  # readings per device: to fill windows, then timed
    sim = simulate(
        SimConfig(devices=devices, count=warm + timed, seed=5, start_ts=time.time() - 3600)
    )
    readings = list(sim.readings())
    now = time.time()
    limits = ValidationLimits()
    t0 = time.perf_counter()
    scorer = Scorer(failure_model=load_promoted(SHIPPED_ROOT))  # compiled kernel (the default)
    startup_s = time.perf_counter() - t0  # JIT warm-up included (numba cache warm or cold)
    from edgeml.models.kernel import warm_seconds

    warm_s = warm_seconds() or 0.0
    bare = Scorer()  # no failure model: the online one only
    ref_scorer = Scorer(failure_model=scorer.failure_model, kernel="reference")
    ref_bare = Scorer(kernel="reference")
    ids = [d.device_id for d in sim.devices]
    by_device: dict[str, list[Any]] = {d: [] for d in ids}
    for r in readings:
        by_device[r.device_id].append(r)
    # warmed states (bytes), so each repeat starts from the same state
    warmed: dict[str, bytes] = {}
    for d in ids:
        state = scorer.new_state(d)
        scorer.score(state, by_device[d][:warm])
        warmed[d] = state.to_bytes()
    single = [r for r in readings if r.seq >= warm]  # event order, devices interleaved
    batches = {d: by_device[d][warm:] for d in ids}
    n = len(single)

    def states() -> dict[str, DeviceState]:
        return {d: DeviceState.from_bytes(b) for d, b in warmed.items()}

    raw_single = [orjson.dumps(r.to_wire()) for r in single]
    raw_batched = [orjson.dumps({"readings": [r.to_wire() for r in batches[d]]}) for d in ids]

    rows: dict[str, dict[str, float]] = {}

    def row(name: str, s: float, b: float) -> None:
        rows[name] = {"single": s, "batched": b}

    row(
        "validation (parse_message)",
        best_cpu_us(
            lambda: sum(len(parse_message(m, now, limits).readings) for m in raw_single), repeats
        ),
        best_cpu_us(
            lambda: sum(len(parse_message(m, now, limits).readings) for m in raw_batched), repeats
        ),
    )
    from bench.decode import decode_rows  # parse/encode before and after (issue #12, item 2)

    rows.update(decode_rows(raw_single, raw_batched, now, repeats))

    def features_single() -> int:
        st = states()
        t0 = time.process_time()
        for r in single:
            scorer.extractor.update(st[r.device_id].features, r)
        return _exclude_setup(t0, n)

    def features_batched() -> int:
        st = states()
        t0 = time.process_time()
        for d in ids:
            f = st[d].features
            for r in batches[d]:
                scorer.extractor.update(f, r)
        return _exclude_setup(t0, n)

    feat_s = _best_timed(features_single, repeats)
    feat_b = _best_timed(features_batched, repeats)
    row("feature update (FeatureExtractor.update)", feat_s, feat_b)

    def score_single(s: Scorer, per_call: int) -> Callable[[], int]:
        def run() -> int:
            st = states()
            t0 = time.process_time()
            for i in range(0, n, per_call):
                chunk = single[i : i + per_call]
                s.score_many([(st[r.device_id], [r]) for r in chunk])
            return _exclude_setup(t0, n)

        return run

    def score_batched(s: Scorer) -> Callable[[], int]:
        def run() -> int:
            st = states()
            t0 = time.process_time()
            for d in ids:
                s.score(st[d], batches[d])
            return _exclude_setup(t0, n)

        return run

    ref_s = _best_timed(score_single(ref_bare, 1), repeats)
    ref_b = _best_timed(score_batched(ref_bare), repeats)
    row(
        "online anomaly scoring + learn (reference scorer w/o ONNX - features)",
        round(ref_s - feat_s, 2),
        round(ref_b - feat_b, 2),
    )
    row("scorer w/o ONNX, reference (features + detectors + threshold + alerts)", ref_s, ref_b)
    row(
        "scorer w/o ONNX, compiled kernel (the same, models.kernel)",
        _best_timed(score_single(bare, 1), repeats),
        _best_timed(score_batched(bare), repeats),
    )
    model = scorer.failure_model
    if model is not None:
        width = len(scorer.failure_inputs.names)
        x1 = np.random.default_rng(1).random((1, width), dtype=np.float32)
        x100 = np.random.default_rng(1).random((BATCH, width), dtype=np.float32)
        x500 = np.random.default_rng(1).random((500, width), dtype=np.float32)

        def predict(x: np.ndarray, calls: int) -> Callable[[], int]:
            def run() -> int:
                for _ in range(calls):
                    model.predict(x)
                return calls * len(x)

            return run

        calls = 200 if quick else 1000
        row(
            "ONNX failure model, 1 row per call (batched: 100 rows per call)",
            best_cpu_us(predict(x1, calls), repeats),
            best_cpu_us(predict(x100, calls // 10), repeats),
        )
        rows["ONNX failure model, 500 rows per call (a take_events batch)"] = {
            "single": best_cpu_us(predict(x500, calls // 50), repeats),
            "batched": float("nan"),
        }
    for label, s in (("reference", ref_scorer), ("compiled", scorer)):
        row(
            f"Scorer.score_many as the worker calls it (single: 500 devices per call), {label}",
            _best_timed(score_single(s, 500), repeats),
            _best_timed(score_batched(s), repeats),
        )
    st = states()
    blobs = [st[d].to_bytes() for d in ids]

    def to_bytes() -> int:
        for d in ids:
            st[d].to_bytes()
        return len(ids)

    def from_bytes() -> int:
        for b in blobs:
            DeviceState.from_bytes(b)
        return len(blobs)

    save = best_cpu_us(to_bytes, repeats)
    load = best_cpu_us(from_bytes, repeats)
    row(
        "state save (DeviceState.to_bytes; the worker: once per device per offset commit)",
        save,
        round(save / BATCH, 2),
    )
    row(
        "state load (from_bytes; skipped when the worker's cache holds it)",
        load,
        round(load / BATCH, 2),
    )
    ids_models = scorer.model_ids

    def wire(r: Any) -> dict[str, Any]:
        return Prediction(r.device_id, r.ts, r.seq, 0.1, 0.01, ids_models, sent_at=r.sent_at,
                          scored_at=now).to_wire()  # fmt: skip

    row(
        "prediction serialization (to_wire + orjson)",
        best_cpu_us(lambda: sum(1 for r in single if orjson.dumps(wire(r))), repeats),
        best_cpu_us(
            lambda: sum(
                len(batches[d])
                for d in ids
                if orjson.dumps({"predictions": [wire(r) for r in batches[d]]})
            ),
            repeats,
        ),
    )

    def pipeline(
        messages: list[bytes], per_batch: int, readings_n: int, s: Scorer = scorer
    ) -> Callable[[], int]:
        def run() -> int:
            store = _DictStore()
            for d, b in warmed.items():
                store.table[d] = b
            p = ReadingPipeline(s, limits)
            inbound = [Inbound(b"k", m, "t", 0, i) for i, m in enumerate(messages)]
            t0 = time.process_time()
            for i in range(0, len(inbound), per_batch):
                p.process(inbound[i : i + per_batch], store)
            return _exclude_setup(t0, readings_n)

        return run

    for label, s in (("reference", ref_scorer), ("compiled", scorer)):
        row(
            f"ReadingPipeline.process end to end (500 messages per batch; state via to_bytes), "
            f"{label}",
            _best_timed(pipeline(raw_single, 500, n, s), repeats),
            _best_timed(pipeline(raw_batched, 5, n, s), repeats),
        )
    if env is not None:
        produce = asyncio.run(_produce(env, quick=quick))
        rows.update(produce)
    kernel = {"startup_s": round(startup_s, 3), "warm_s": round(warm_s, 3)}
    return {"versions": versions(), "devices": devices, "readings": n, "rows": rows,
            "kernel": kernel}  # fmt: skip


_setup_cpu = 0.0


def _exclude_setup(t0: float, count: int) -> int:
    """Record the CPU time since `t0` (the timed part); `_best_timed` uses it."""
    global _setup_cpu
    _setup_cpu = time.process_time() - t0
    return count


def _best_timed(fn: Callable[[], int], repeats: int) -> float:
    """Like `_best`, but times only what `fn` marked with `_exclude_setup`."""
    best = float("inf")
    for _ in range(repeats):
        count = fn()
        best = min(best, _setup_cpu / max(count, 1) * 1e6)
    return round(best, 2)


async def _produce(env: BenchEnv, *, quick: bool) -> dict[str, dict[str, float]]:
    from aiokafka import AIOKafkaProducer

    prefix = env.prefix("steps")
    topic = f"{prefix}produce"
    create_topics(env, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bootstrap, acks="all", linger_ms=env.linger_ms,
        max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    prediction = orjson.dumps(
        {"device_id": "dev-0001", "ts": 1.7e9, "seq": 1, "anomaly_score": 0.1,
         "failure_prob": 0.01, "models": {"anomaly": "residual-ensemble@2",
         "failure": "failure-gbm@1", "failure_online": "failure-online@0"}, "late": False,
         "is_anomaly": False, "sent_at": 1.7e9, "scored_at": 1.7e9}
    )  # fmt: skip
    envelope = b'{"predictions":[' + b",".join([prediction] * BATCH) + b"]}"
    keys = [f"dev-{i:04d}".encode() for i in range(1000)]
    out: dict[str, dict[str, float]] = {}
    try:

        async def send(value: bytes, messages: int) -> tuple[float, float]:
            wall, cpu = time.perf_counter(), time.process_time()
            pending = [
                await producer.send(topic, value, key=keys[i % 1000]) for i in range(messages)
            ]
            await asyncio.gather(*pending)
            return time.perf_counter() - wall, time.process_time() - cpu

        await send(prediction, 1000)  # warm-up: connections, metadata
        m = 5_000 if quick else 20_000
        w1, c1 = min([await send(prediction, m), await send(prediction, m)])
        w2, c2 = min([await send(envelope, m // BATCH), await send(envelope, m // BATCH)])
        readings = m  # the envelope run carries m readings too
        out["produce (aiokafka send, acks=all): producer CPU"] = {
            "single": round(c1 / readings * 1e6, 2),
            "batched": round(c2 / readings * 1e6, 2),
        }
        out["produce (aiokafka send, acks=all): wall time incl. broker"] = {
            "single": round(w1 / readings * 1e6, 2),
            "batched": round(w2 / readings * 1e6, 2),
        }
    finally:
        await producer.stop()
        cleanup(env, prefix)
    return out


def print_table(result: dict[str, Any]) -> None:
    emit(
        f"steps: µs per reading (CPU, best of repeats), {result['devices']} devices, "
        f"{result['readings']:,} readings; single = 1 reading/message, batched = {BATCH}/message"
    )
    emit(f"  {'step':<92} {'single':>9} {'batched':>9}")
    for name, v in result["rows"].items():
        emit(f"  {name:<92} {v['single']:>9.2f} {v['batched']:>9.2f}")
    kernel = result.get("kernel")
    if kernel:
        emit(
            f"  compiled kernel: Scorer construction {kernel['startup_s']:.2f} s, of which JIT "
            f"warm-up {kernel['warm_s']:.2f} s (numba's cache: ~/.cache/edgeml-numba)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-produce", action="store_true", help="Skip the broker step.")
    args = parser.parse_args(argv)
    env = None if args.no_produce else env_from_args(args)
    result = steps_command(env, repeats=args.repeats, quick=args.quick)
    print_table(result)
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
