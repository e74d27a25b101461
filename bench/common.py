"""What every benchmark shares: options, run ids and topic prefixes, topics, percentiles, versions.

`BenchEnv` is built once per command from its options (`add_options` / `env_from_args`); the
broker address defaults to `EDGEML_BOOTSTRAP_SERVERS` (via `Settings`), so a bench talks to the
same broker as `edgeml worker`. Every run gets a prefix `bench-<run id>-<tag>-` for its topics,
app ids and consumer groups; `cleanup(prefix)` deletes those topics afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeml.app.settings import Settings

__all__ = [
    "ROOT",
    "BenchEnv",
    "add_options",
    "best_cpu_us",
    "cleanup",
    "cpu_seconds",
    "create_topics",
    "emit",
    "env_from_args",
    "free_port",
    "percentiles",
    "plain",
    "print_json",
    "rss_bytes",
    "versions",
]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchEnv:
    """Where and how a benchmark runs. Created by `env_from_args` (or directly in tests)."""

    bootstrap: str
    partitions: int = 4
    linger_ms: int = 5
    acks: str = "all"
    store: str = "rocksdb://"  # what the worker ships with
    quick: bool = False
    keep_topics: bool = False
    run_id: str = field(default_factory=lambda: time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4])
    out_dir: Path = ROOT / "var" / "bench"
    worker_env: tuple[tuple[str, str], ...] = ()  # extra EDGEML_* for B and C (experiments)

    @property
    def run_dir(self) -> Path:
        path = self.out_dir / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prefix(self, tag: str) -> str:
        """A topic prefix (also the app id / group stem) unique to this run and `tag`."""
        return f"bench-{self.run_id}-{tag}-"

    def settings(self, **overrides: Any) -> Settings:
        return Settings(
            bootstrap_servers=self.bootstrap,
            topic_partitions=self.partitions,
            producer_linger_ms=self.linger_ms,
            **overrides,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "bootstrap": self.bootstrap,
            "partitions": self.partitions,
            "acks": self.acks,
            "linger_ms": self.linger_ms,
            "store": self.store,
            "quick": self.quick,
            "run_id": self.run_id,
            "worker_env": dict(self.worker_env),
        }


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every bench command takes."""
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers.")
    parser.add_argument("--partitions", type=int, default=4, help="Partitions of every topic.")
    parser.add_argument("--linger-ms", type=int, default=5, help="Producer linger (all parties).")
    parser.add_argument(
        "--store",
        default="rocksdb://",
        help="Worker table store (the worker's default; memory:// is about 12 %% faster).",
    )
    parser.add_argument("--quick", action="store_true", help="Shorter runs (rougher figures).")
    parser.add_argument("--keep-topics", action="store_true", help="Do not delete bench topics.")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="EDGEML_X=VALUE",
        help="Extra setting for the Faust systems B and C, e.g. EDGEML_BATCH_WITHIN_S=0.02 "
        "(repeatable).",
    )


def env_from_args(args: argparse.Namespace) -> BenchEnv:
    bootstrap = args.bootstrap or Settings().bootstrap_servers
    pairs = []
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith(("EDGEML_", "FAUST_LOOP")):
            raise SystemExit(
                f"--worker-env {item!r}: expected EDGEML_NAME=VALUE or FAUST_LOOP=uvloop"
            )
        pairs.append((name, value))
    return BenchEnv(
        bootstrap=bootstrap,
        partitions=args.partitions,
        linger_ms=args.linger_ms,
        store=args.store,
        quick=args.quick,
        keep_topics=args.keep_topics,
        out_dir=args.out_dir,
        worker_env=tuple(pairs),
    )


# --- topics ---------------------------------------------------------------------------------


def create_topics(env: BenchEnv, names: Iterable[str], partitions: int | None = None) -> None:
    """Create topics (missing ones only) with `partitions` and wait until they have leaders."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap, client_id="edgeml-bench")
    try:
        existing = set(admin.list_topics())
        for name in names:
            if name in existing:
                continue
            topic = NewTopic(name, partitions or env.partitions, 1)
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic], wait_for_metadata=True)
    finally:
        admin.close()


def cleanup(env: BenchEnv, prefix: str) -> None:
    """Delete the topics and (empty) consumer groups whose names start with `prefix` (unless
    `--keep-topics`)."""
    if env.keep_topics:
        return
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(bootstrap_servers=env.bootstrap, client_id="edgeml-bench")
        try:
            doomed = [t for t in admin.list_topics() if t.startswith(prefix)]
            if doomed:
                admin.delete_topics(doomed)
            groups = [
                g["group_id"]
                for g in admin.list_groups()
                if g["group_id"].startswith(prefix) and g.get("group_state") == "Empty"
            ]
            if groups:
                admin.delete_groups(groups)
        finally:
            admin.close()
    except Exception as exc:  # cleanup only: the names are unique per run anyway
        emit(f"  (could not delete topics {prefix}*: {exc})")


# --- figures ----------------------------------------------------------------------------------


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/p99.9/max (and n) of latencies in milliseconds; NaN when empty."""
    import numpy as np

    if not values_ms:
        nan = math.nan
        return {"n": 0, "p50": nan, "p95": nan, "p99": nan, "p999": nan, "max": nan}
    array = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99, p999 = np.percentile(array, [50, 95, 99, 99.9]).tolist()
    return {
        "n": len(array),
        "p50": round(p50, 2),
        "p95": round(p95, 2),
        "p99": round(p99, 2),
        "p999": round(p999, 2),
        "max": round(float(array.max()), 2),
    }


def versions() -> dict[str, str]:
    """Versions of everything on the measured path, and the machine."""
    from importlib.metadata import PackageNotFoundError, version

    from edgeml.infra.kafka.broker import KAFKA_VERSION

    found = {
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "machine": f"{platform.machine()} nproc={os.cpu_count()}",
    }
    for package in ("faust-streaming", "aiokafka", "river", "onnxruntime", "numpy", "orjson"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "-"
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (Linux /proc); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def emit(line: str = "") -> None:
    """Progress lines and tables go to stdout, flushed: the figures are the output."""
    print(line, flush=True)


def print_json(result: dict[str, Any]) -> None:
    """The command's one machine-readable line (last line of stdout)."""
    sys.stdout.write(json.dumps(plain(result)) + "\n")
    sys.stdout.flush()


def plain(value: Any) -> Any:
    """`value` with NaN/inf as None and paths as strings, so it is strict JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def best_cpu_us(fn: Callable[[], int], repeats: int) -> float:
    """Best CPU microseconds per item over `repeats` runs of `fn` (which returns the count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        n = fn()
        best = min(best, (time.process_time() - start) / max(n, 1) * 1e6)
    return round(best, 2)
