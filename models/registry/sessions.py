"""Process-wide ONNX Runtime sessions (`SessionCache`) and what one model costs (`ModelMemory`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from edgeml.models.latency import rss_bytes

__all__ = ["ModelMemory", "SessionCache", "default_sessions", "session_options"]


@dataclass(slots=True, frozen=True)
class ModelMemory:
    """What one loaded model costs: its file, and the RSS growth measured around its session."""

    file_bytes: int
    rss_delta_bytes: int
    session_create_ms: float


@dataclass(slots=True)
class _Session:
    session: Any  # onnxruntime.InferenceSession
    create_ms: float
    rss_delta_bytes: int


class SessionCache:
    """Process-wide ONNX Runtime sessions, one per (model sha256, intra-op threads).

    A session is created the first time a model is loaded and shared by every later load and
    every `LoadedModel` of the same bytes (sessions are thread-safe for `run`). Use the module's
    `default_sessions()`; tests inject a fresh one into `ModelRegistry(sessions=...)`.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, int], _Session] = {}
        self._lock = threading.Lock()
        self.created = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, sha256: str, model_bytes: bytes, threads: int) -> _Session:
        key = (sha256, threads)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is None:
                cached = self._sessions[key] = _create_session(model_bytes, threads)
                self.created += 1
            return cached

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


def session_options(threads: int = 1) -> Any:
    """The options every session is built with: `threads` intra-op threads, sequential, DAZ."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    return opts


def _create_session(model_bytes: bytes, threads: int) -> _Session:
    import onnxruntime as ort

    before = rss_bytes()
    start = time.perf_counter()
    session = ort.InferenceSession(
        model_bytes, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    create_ms = (time.perf_counter() - start) * 1000.0
    return _Session(session, create_ms, max(rss_bytes() - before, 0))


_DEFAULT_SESSIONS = SessionCache()


def default_sessions() -> SessionCache:
    """The one session cache of this process."""
    return _DEFAULT_SESSIONS
