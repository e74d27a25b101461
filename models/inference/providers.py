"""ONNX Runtime execution providers: an ordered wish list, resolved against this machine.

    providers = resolve(["openvino", "cpu"])          # names or ORT's own provider names
    session = provider_session(model_bytes, providers, threads=1)

ONNX Runtime takes providers in priority order and runs each graph node on the first that
supports it, so the list is a preference, not a choice of one. What is installed decides what
exists: `OpenVINOExecutionProvider` comes with the `onnxruntime-openvino` wheel,
`CUDAExecutionProvider` / `TensorrtExecutionProvider` with `onnxruntime-gpu` (and the CUDA /
TensorRT libraries at run time); each wheel *replaces* the plain `onnxruntime` package (they
install the same `onnxruntime` module), so one environment has one of them.

A wished provider this build lacks is dropped with ONE warning per (provider, reason) and
counted in `FALLBACKS` (the app's metrics read it); `CPUExecutionProvider` always closes the
list, so a session is always created. ONNX Runtime itself also falls back silently when a
provider is compiled in but cannot start (e.g. `onnxruntime-gpu` on a machine without a GPU):
`provider_session` compares what the session reports it uses with what was asked for, and
logs and counts that too; and a provider that raises while taking the graph (OpenVINO refuses
graphs with tensors of unknown rank) is dropped and the session made without it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALIASES",
    "CPU",
    "FALLBACKS",
    "ProviderChoice",
    "ProviderSpec",
    "available_providers",
    "node_placement",
    "provider_session",
    "resolve",
    "with_providers",
]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
ALIASES: Mapping[str, str] = {
    "cpu": CPU,
    "openvino": "OpenVINOExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
KNOWN = frozenset(ALIASES.values())

# A provider and its options (ORT's `(name, {option: value})` form), e.g.
# ("openvino", {"device_type": "CPU"}).
ProviderSpec = str | tuple[str, Mapping[str, Any]]

# (provider, "missing" | "failed" | "not started") -> times; read by the app's metrics
FALLBACKS: Counter[tuple[str, str]] = Counter()
_LOGGED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """What a wish list resolved to: `providers` in ORT's form (CPU last) and what was dropped."""

    providers: tuple[tuple[str, dict[str, Any]], ...]
    missing: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.providers)

    def for_ort(self) -> tuple[list[str], list[dict[str, Any]]]:
        """(providers, provider_options) as `InferenceSession` takes them."""
        return [n for n, _ in self.providers], [dict(o) for _, o in self.providers]


def available_providers() -> list[str]:
    """The providers this onnxruntime build has, in ORT's own priority order."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _name(spec: ProviderSpec) -> tuple[str, dict[str, Any]]:
    raw, options = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
    name = ALIASES.get(raw.lower(), raw) if isinstance(raw, str) else raw
    if name not in KNOWN:
        valid = ", ".join(sorted(ALIASES))
        raise ValueError(f"unknown execution provider {raw!r}; choose from: {valid} (or ORT names)")
    return name, options


def _fallback(name: str, reason: str, detail: str) -> None:
    key = (name, reason)
    with _LOCK:
        FALLBACKS[key] += 1
        first = key not in _LOGGED
        _LOGGED.add(key)
    if first:
        log.warning("execution provider %s %s: %s; falling back", name, reason, detail)


def resolve(
    wished: Sequence[ProviderSpec] | None = None, available: Sequence[str] | None = None
) -> ProviderChoice:
    """The wish list (None or empty: CPU only) against what is `available` (default: this
    build). Unknown names raise ValueError listing the valid ones; known but absent ones are
    dropped (logged once, counted); CPU is appended when not wished."""
    have = list(available) if available is not None else available_providers()
    chosen: list[tuple[str, dict[str, Any]]] = []
    missing: list[str] = []
    for spec in wished or ():
        name, options = _name(spec)
        if any(name == n for n, _ in chosen):
            continue
        if name not in have:
            missing.append(name)
            _fallback(name, "missing", f"this onnxruntime build has only {', '.join(have)}")
            continue
        chosen.append((name, options))
    if CPU not in (n for n, _ in chosen):
        chosen.append((CPU, {}))
    return ProviderChoice(tuple(chosen), tuple(missing))


def provider_session(
    model_bytes: bytes,
    providers: ProviderChoice | Sequence[ProviderSpec] | None = None,
    *,
    options: Any = None,
) -> tuple[Any, ProviderChoice]:
    """An `InferenceSession` on the resolved providers, and the choice as the session took it.

    `options` defaults to the registry's session options (one intra-op thread, DAZ), so scores
    match the registry's CPU sessions. A provider the session did not start (ORT's own silent
    fallback) is logged once and counted as "not started", and left out of the returned choice.
    """
    import onnxruntime as ort

    choice = providers if isinstance(providers, ProviderChoice) else resolve(providers)
    if options is None:
        from edgeml.models.registry import session_options

        options = session_options(1)
    failed: list[str] = []
    while True:
        names, provider_options = choice.for_ort()
        try:
            session = ort.InferenceSession(
                model_bytes,
                sess_options=options,
                providers=names,
                provider_options=provider_options,
            )
            break
        except Exception as exc:
            # A provider can be present and still refuse the graph (OpenVINO: "CPU plug-in
            # doesn't support Parameter operation with dynamic rank" on skl2onnx's `label`
            # branch). ORT does not say which provider refused: drop the first non-CPU one.
            first = next((n for n in names if n != CPU), None)
            if first is None:
                raise
            detail = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else repr(exc)
            _fallback(first, "failed", f"session creation raised: {detail}")
            failed.append(first)
            choice = ProviderChoice(
                tuple((n, o) for n, o in choice.providers if n != first), choice.missing
            )
    used = set(session.get_providers())
    for name in names:
        if name not in used:
            _fallback(name, "not started", f"the session runs on {', '.join(sorted(used))}")
    kept = tuple((n, o) for n, o in choice.providers if n in used)
    dropped = tuple(failed) + tuple(n for n in names if n not in used)
    return session, ProviderChoice(kept, choice.missing + dropped)


def with_providers(
    model: Any, model_bytes: bytes, providers: Sequence[ProviderSpec], *, threads: int = 1
) -> Any:
    """`model` (a registry `LoadedModel` of `model_bytes`) on its own session on `providers`
    (`threads` intra-op threads); the registry's shared CPU session is kept when the list
    resolves to CPU alone."""
    from edgeml.models.registry import LoadedModel, session_options

    choice = resolve(providers)
    if choice.names == (CPU,) or model.session is None:
        return model
    session, _ = provider_session(model_bytes, choice, options=session_options(threads))
    return LoadedModel(model.manifest, model.path, model.memory, session=session)


def node_placement(
    model_bytes: bytes, providers: ProviderChoice | Sequence[ProviderSpec] | None, sample: Any
) -> dict[str, int]:
    """How many graph nodes each provider ran in one profiled run on `sample` (ORT reports no
    placement otherwise). Why it matters: a provider that is "used" may run none of the nodes,
    e.g. OpenVINO takes no `ai.onnx.ml` tree ensemble, so a GBM on ["openvino", "cpu"] runs
    wholly on CPU."""
    import json
    import os

    from edgeml.models.registry import session_options

    options = session_options(1)
    options.enable_profiling = True
    session, _ = provider_session(model_bytes, providers, options=options)
    session.run(None, {session.get_inputs()[0].name: sample})
    path = session.end_profiling()
    try:
        with open(path) as fh:
            events = json.load(fh)
    finally:
        os.unlink(path)
    nodes: dict[str, set[str]] = {}
    for event in events:
        provider = event.get("args", {}).get("provider")
        if event.get("cat") == "Node" and provider:
            nodes.setdefault(provider, set()).add(event.get("name", "").split("_kernel_time")[0])
    return {provider: len(names) for provider, names in sorted(nodes.items())}
