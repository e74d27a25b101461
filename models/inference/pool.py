"""A task's pool from a configuration: in-process replicas, remote OIP v2 servers, fault drills.

`PoolSpec` is what a worker is configured with (`app.settings`: `EDGEML_FAILURE_REPLICAS`,
`EDGEML_FAILURE_REMOTE`, ...); `build_backends(spec, registry, model_id)` turns it into the
engine's backends. It runs on the engine's loop (`EngineLoop`), because a `RemoteBackend`'s
aiohttp session belongs to the loop it was created on.

Nothing here stops a worker from starting because one backend cannot be built, as long as
another one can:

- a remote server that does not answer at start-up still joins the pool, declaring the local
  version's signature: its golden-set probe fails, so its breaker opens, and the first probe
  it passes after the server comes back closes it (R9: `edgeml serve` killed and restarted);
- in-process replicas whose model does not load (a tampered or corrupted file) become one
  `BrokenBackend` that fails every call with the load error, shown in the metrics and the
  reasons of the other backends' failovers, when other backends exist; with none, the load
  error is raised, as without the engine.

Fault drills (`drills`, the `EDGEML_FAULT_FAILURE_BACKENDS` test hook, like the other `fault_*`
settings): `raise` and `hang` are replicas that answer their first `drill_good_calls` calls (the
load-time golden-set probe) and then go bad while serving: every later call raises, or never
answers; `corrupt` is an ONNX replica loaded from a truncated copy of the model file:
onnxruntime refuses it, so it is a `BrokenBackend` with onnxruntime's parse error, taken out by
the load-time probe before it can delay a call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edgeml.models.inference.backends import SCORE, Backend, Signature, Tensors, TensorSpec
from edgeml.models.inference.errors import BackendError
from edgeml.models.inference.health import describe
from edgeml.models.inference.loading import onnx_replicas
from edgeml.models.inference.remote import RemoteBackend
from edgeml.models.inference.testing import Mode, ScriptedBackend
from edgeml.models.manifest import ModelManifest
from edgeml.models.registry import ModelRegistry

__all__ = ["DRILLS", "BrokenBackend", "DrillBackend", "PoolSpec", "build_backends", "corrupt_copy"]

log = logging.getLogger(__name__)

DRILLS = ("raise", "hang", "corrupt")


@dataclass(frozen=True)
class PoolSpec:
    """One task's backends: `replicas` in-process ONNX replicas, one `RemoteBackend` per URL in
    `remote` (model `remote_model` on it; `edgeml serve` answers `failure` for `failure-gbm`),
    and the fault `drills` (module docstring; their scratch files go to `scratch`)."""

    replicas: int = 1
    remote: tuple[str, ...] = ()
    remote_model: str = "failure"
    token: str | None = None
    remote_timeout_s: float = 5.0
    drills: tuple[str, ...] = ()
    drill_good_calls: int = 1
    scratch: Path | None = None

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if self.replicas == 0 and not self.remote:
            raise ValueError("a pool needs in-process replicas or remote backends")
        for url in self.remote:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"remote backend {url!r} is not an http(s)://host:port URL")
        unknown = [d for d in self.drills if d not in DRILLS]
        if unknown:
            raise ValueError(f"unknown fault drill(s) {unknown}; choose from {', '.join(DRILLS)}")


@dataclass(eq=False)
class DrillBackend:
    """A fault drill (module docstring): answers like `inner` for its first `good_calls` calls,
    then every call raises (`mode="raise"`) or never answers (`"hang"`)."""

    name: str
    inner: Backend
    mode: Mode
    good_calls: int = 1
    calls: int = 0

    @property
    def model_ref(self) -> str:
        return self.inner.model_ref

    @property
    def signature(self) -> Signature:
        return self.inner.signature

    @property
    def metadata(self) -> Mapping[str, Any]:
        return {**self.inner.metadata, "drill": self.mode}

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls <= self.good_calls:
            return await self.inner.infer(inputs)
        if self.mode == "hang":
            await asyncio.Event().wait()
        raise BackendError(f"{self.name} is a fault drill: it fails every call")

    async def close(self) -> None:
        await self.inner.close()


@dataclass(eq=False)
class BrokenBackend:
    """A backend that could not be built: every call raises `BackendError(reason)`. It keeps
    its place in the pool so the failure is visible (metrics, failover reasons, `status`)."""

    name: str
    model_ref: str
    reason: str
    signature: Signature
    metadata: Mapping[str, Any] = field(default_factory=dict)

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        raise BackendError(f"{self.name}: {self.reason}")

    async def close(self) -> None:
        return None


def local_signature(manifest: ModelManifest, input_name: str = "input") -> Signature:
    """What an in-process replica of `manifest` declares (`backends.onnx_backend`)."""
    return Signature(
        (TensorSpec(input_name, "FP32", (-1, len(manifest.inputs))),),
        (TensorSpec(SCORE, "FP64", (-1,)),),
    )


def corrupt_copy(data: bytes, target: Path) -> Path:
    """A truncated copy of ONNX bytes (the first half: an interrupted copy or download)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: len(data) // 2])
    return target


def _load_onnx_file(path: Path, name: str, manifest: ModelManifest, sig: Signature) -> Backend:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own parse / graph errors
        return BrokenBackend(name, manifest.ref, f"cannot load {path.name}: {describe(exc)}",
                             sig, {"kind": "onnx", "path": str(path)})  # fmt: skip
    raise ValueError(f"the corrupted copy {path} still loads: the drill would test nothing")


async def _remote(url: str, spec: PoolSpec, manifest: ModelManifest,
                  sig: Signature) -> RemoteBackend:  # fmt: skip
    name = f"oip://{urlsplit(url).netloc}"
    options: dict[str, Any] = {"name": name, "token": spec.token,
                               "timeout_s": spec.remote_timeout_s}  # fmt: skip
    try:
        return await RemoteBackend.connect(url, spec.remote_model, **options)
    except Exception as exc:  # not up yet: it joins the pool; its probe says when it is back
        log.warning("remote backend %s does not answer at start (%s): it joins the pool with "
                    "breaker open until a probe passes", name, describe(exc))  # fmt: skip
        return RemoteBackend(url, spec.remote_model, signature=sig,
                             model_ref=f"{manifest.model_id}@remote", **options)  # fmt: skip


async def build_backends(
    spec: PoolSpec, registry: ModelRegistry, model_id: str, *, version: str | None = None
) -> list[Backend]:
    """The pool `spec` describes for `model_id` (promoted version unless `version`), in order:
    replicas, remotes, drills. Run it on the loop the engine will run on."""
    manifest = registry.manifest(model_id, version)
    backends: list[Backend] = []
    sig = local_signature(manifest)
    broken: str | None = None
    if spec.replicas:
        try:
            replicas = onnx_replicas(registry, model_id, spec.replicas, version=manifest.version)
        except Exception as exc:
            if not spec.remote:
                raise
            broken = describe(exc)
            log.error("in-process replicas of %s do not load (%s): serving from the remote "
                      "backends", manifest.ref, broken)  # fmt: skip
            backends.append(BrokenBackend(f"{manifest.ref}#local", manifest.ref, broken, sig))
        else:
            backends.extend(replicas)
            sig = replicas[0].signature
    for url in spec.remote:
        backends.append(await _remote(url, spec, manifest, sig))
    for drill in spec.drills:
        name = f"drill-{drill}"
        if drill == "corrupt":
            scratch = spec.scratch or registry.root.parent
            data = registry.model_bytes(model_id, manifest.version)
            copy = corrupt_copy(data, scratch / f"{manifest.model_id}-corrupt.onnx")
            backends.append(_load_onnx_file(copy, name, manifest, sig))
        else:
            mode: Mode = "raise" if drill == "raise" else "hang"
            try:
                inner: Backend = onnx_replicas(registry, model_id, 1, version=manifest.version)[0]
            except Exception:  # no loadable model: a drill that fails from its first call
                inner = ScriptedBackend(name, mode=mode, model_ref=manifest.ref, signature=sig)
            backends.append(DrillBackend(name, inner, mode, spec.drill_good_calls))
    return backends
