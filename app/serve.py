"""The model server of `edgeml serve`: the registry's promoted models over the Open Inference
Protocol v2 REST (KServe v2 / Triton), answered by the inference engine.

Routes (docs/oip.openapi.yaml describes every body):

    GET  /v2                                   server metadata
    GET  /v2/health/live | /v2/health/ready    200, or 503 {"ready": false} (no token needed)
    GET  /metrics                              Prometheus (app/serve_metrics.py)
    GET  /v2/models/{name}[/versions/{v}]      model metadata (inputs, outputs, versions)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer  tensor JSON, or Triton's binary extension

Each served model is an engine task with `replicas` in-process ONNX replicas of its promoted
version, probed with its golden set at start and on an interval; `failure` is an alias of
`failure-gbm` (the stream's task name). Errors are OIP's `{"error": "..."}`: 400 for a bad
body or inputs the model does not take, 404 for an unknown model, version or path, 401 without
the bearer token (`EDGEML_WEB_TOKEN`, the worker's), 503 when no backend answered in time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from edgeml.app.errors import ConfigError
from edgeml.app.model_metrics import ProviderFallbacks
from edgeml.app.serve_metrics import CONTENT_TYPE, EngineMetrics
from edgeml.app.web.auth import bearer_middleware
from edgeml.models.inference import (
    InferenceEngine,
    Signature,
    TaskConfig,
    TensorError,
    golden_set,
    onnx_replicas,
)
from edgeml.models.inference.tensors import HEADER_LENGTH, decode_request, dtype_of, encode_response
from edgeml.models.manifest import ModelManifest
from edgeml.models.registry import FAILURE_MODEL_ID, ModelRegistry

__all__ = ["PUBLIC_PATHS", "OipServer", "ServedModel", "build_server"]

PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
ALIASES = {"failure": FAILURE_MODEL_ID}
SERVER_NAME = "edgeml"
MAX_BODY_BYTES = 64 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One model the server answers for: its promoted version and the engine task behind it."""

    name: str
    version: str
    task: str
    signature: Signature
    manifest: ModelManifest
    platform: str = "onnxruntime_onnx"
    providers: tuple[str, ...] = ()  # what the replicas' session runs on

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [spec.to_dict() for spec in self.signature.inputs],
            "outputs": [spec.to_dict() for spec in self.signature.outputs],
        }


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


class OipServer:
    """The OIP v2 routes over an engine and the models it serves; `app()` builds the aiohttp
    application (the engine is started on startup and closed on cleanup)."""

    def __init__(
        self,
        engine: InferenceEngine,
        models: Sequence[ServedModel],
        *,
        token: str | None = None,
        aliases: dict[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.models = {m.name: m for m in models}
        known = aliases if aliases is not None else ALIASES
        self.aliases = {a: t for a, t in known.items() if t in self.models and a not in self.models}
        self.token = token
        self.metrics = EngineMetrics(engine)
        self.metrics.registry.register(ProviderFallbacks())  # edgeml_provider_fallbacks

    # -- application ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        middlewares: list[Any] = [_json_errors]
        if self.token:
            middlewares.append(bearer_middleware(self.token, PUBLIC_PATHS))
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v2", self.server_metadata)
        app.router.add_get("/v2/health/live", self.live)
        app.router.add_get("/v2/health/ready", self.ready)
        app.router.add_get("/metrics", self.prometheus)
        for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            app.router.add_get(base, self.model_metadata)
            app.router.add_get(base + "/ready", self.model_ready)
            app.router.add_post(base + "/infer", self.infer)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._close)
        return app

    async def _start(self, _app: web.Application) -> None:
        await self.engine.start()

    async def _close(self, _app: web.Application) -> None:
        await self.engine.close()

    def _model(self, request: web.Request) -> ServedModel | web.Response:
        name = request.match_info["name"]
        model = self.models.get(self.aliases.get(name, name))
        if model is None:
            served = ", ".join([*self.models, *self.aliases]) or "none"
            return _error(f"unknown model {name!r} (served: {served})", 404)
        version = request.match_info.get("version")
        if version is not None and version != model.version:
            return _error(
                f"model {model.name!r} has no served version {version!r} (served: {model.version})",
                404,
            )
        return model

    # -- views ----------------------------------------------------------------------------------

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": SERVER_NAME, "version": _version(), "extensions": ["binary_tensor_data"]}
        )

    async def prometheus(self, request: web.Request) -> web.Response:
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        ready = all(self.engine.ready(m.task) for m in self.models.values())
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def model_metadata(self, request: web.Request) -> web.Response:
        model = self._model(request)
        if isinstance(model, web.Response):
            return model
        return web.json_response(model.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        model = self._model(request)
        if isinstance(model, web.Response):
            return model
        ready = self.engine.ready(model.task)
        body: dict[str, Any] = {"name": model.name, "ready": ready}
        if not ready:
            body["error"] = f"every backend of {model.name} is down"
        return web.json_response(body, status=200 if ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        model = self._model(request)
        if isinstance(model, web.Response):
            return model
        body = await request.read()
        raw_length = request.headers.get(HEADER_LENGTH)
        try:
            length = int(raw_length) if raw_length is not None else None
            decoded = decode_request(body, length)
            inputs = _conform(decoded.inputs, model.signature)
        except ValueError as exc:  # TensorError, or a header that is not a number
            return _error(f"{model.name}: {exc}", 400)
        result = await self.engine.infer(model.task, inputs)  # metrics: the engine's hooks
        if result.value is None:
            return _error(f"{model.name}: {result.reason}", 503)
        try:
            payload, header = encode_response(model.name, model.version, result.outputs, decoded)
        except TensorError as exc:
            return _error(f"{model.name}: {exc}", 400)
        if header is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(
            body=payload,
            content_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header)},
        )


def _conform(inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
    """The inputs cast to the model's declared datatypes; TensorError when they do not fit."""
    reason = signature.refuses(inputs)
    if reason is not None:
        raise TensorError(reason)
    out = dict(inputs)
    for spec in signature.inputs:
        out[spec.name] = np.ascontiguousarray(inputs[spec.name], dtype=dtype_of(spec.datatype))
    return out


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405/413 pages as OIP `{"error": ...}` bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(f"{exc.reason}: {request.method} {request.path}", exc.status)
        if "Allow" in exc.headers:  # a 405 must say which methods the path takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def build_server(
    registry: ModelRegistry,
    model_ids: Sequence[str] = (),
    *,
    replicas: int = 2,
    config: TaskConfig | None = None,
    token: str | None = None,
    seed: int | None = 0,
    providers: Sequence[str] | None = None,
) -> OipServer:
    """A server for `model_ids` (default: every model with a promoted version), its ONNX
    sessions on `providers` (an ordered execution-provider wish list, default CPU; a missing
    one falls back to CPU, logged once and counted in `edgeml_provider_fallbacks`)."""
    ids = list(model_ids) or [m for m in registry.model_ids() if registry.promoted_version(m)]
    if not ids:
        raise ConfigError(f"no promoted model to serve in {registry.root}")
    engine = InferenceEngine(seed=seed)
    served: list[ServedModel] = []
    for model_id in ids:
        manifest = registry.manifest(model_id)
        backends = onnx_replicas(registry, model_id, replicas, providers=providers)
        engine.add_task(model_id, backends, config, golden=golden_set(registry, model_id))
        took = tuple(backends[0].metadata.get("providers") or ())
        signature = backends[0].signature
        served.append(
            ServedModel(model_id, manifest.version, model_id, signature, manifest, providers=took)
        )
    return OipServer(engine, served, token=token)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeml")
    except PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"
