"""`RemoteBackend`: a model on any Open Inference Protocol v2 REST server (KServe v2, Triton,
MLServer, another worker, `edgeml serve`).

One pooled `aiohttp.ClientSession` per backend (keep-alive: a call on a warm connection skips
the TCP handshake; `limit` bounds the connections), a per-call timeout (`timeout_s`, which the
engine's own per-call timeout usually undercuts), and binary tensors by default (Triton's
binary extension; `binary=False` sends plain JSON). `connect` reads the model's metadata
(`GET /v2/models/{name}[/versions/{v}]`) so the backend declares the inputs the server says it
accepts. aiohttp is imported when a remote backend is built: the scoring core without it still
loads (an edge box that only runs in-process models).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeml.models.inference.backends import Signature, Tensors, TensorSpec
from edgeml.models.inference.errors import BackendError, TensorError
from edgeml.models.inference.tensors import HEADER_LENGTH, decode_response, encode_request

__all__ = ["RemoteBackend"]


@dataclass(eq=False)
class RemoteBackend:
    """A model served over OIP v2 REST at `url` (e.g. `http://10.0.0.5:8000`).

    `model` / `version` name it on the server; `rename` maps the engine's tensor names to the
    server's (`{"input": "float_input", "score": "probabilities"}`) both ways; `token` is sent
    as `Authorization: Bearer`. Usually created with `await RemoteBackend.connect(...)`.
    """

    url: str
    model: str
    version: str | None = None
    name: str = ""
    model_ref: str = ""
    signature: Signature = field(default_factory=lambda: Signature(()))
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    token: str | None = None
    timeout_s: float = 5.0
    binary: bool = True
    limit: int = 16
    _session: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        path = f"/v2/models/{self.model}"
        if self.version:
            path += f"/versions/{self.version}"
        self._path = path
        if not self.name:
            self.name = f"{self.url}{path}"
        if not self.model_ref:
            self.model_ref = f"{self.model}@{self.version or 'remote'}"
        self._back = {v: k for k, v in self.rename.items()}

    @classmethod
    async def connect(cls, url: str, model: str, version: str | None = None,
                      **options: Any) -> RemoteBackend:  # fmt: skip
        """A backend whose signature and model ref come from the server's model metadata."""
        backend = cls(url, model, version, **options)
        try:
            meta = await backend.model_metadata()
        except BaseException:
            await backend.close()  # else its pooled session leaks ("Unclosed client session")
            raise
        back = backend._back
        specs = tuple(
            TensorSpec(back.get(t["name"], t["name"]), t["datatype"], tuple(t["shape"]))
            for t in meta.get("inputs", [])
        )
        outs = tuple(
            TensorSpec(back.get(t["name"], t["name"]), t["datatype"], tuple(t["shape"]))
            for t in meta.get("outputs", [])
        )
        backend.signature = Signature(specs, outs)
        versions = meta.get("versions") or []
        if not options.get("model_ref"):
            backend.model_ref = (
                f"{meta.get('name', model)}@{version or (versions[-1] if versions else 'remote')}"
            )
        params = meta.get("parameters")
        extra: dict[str, Any] = params if isinstance(params, dict) else {}
        backend.metadata = {"kind": "remote", "platform": meta.get("platform"), **extra,
                            **dict(backend.metadata)}  # fmt: skip
        return backend

    def _client(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers=headers,
            )
        return self._session

    async def model_metadata(self) -> dict[str, Any]:
        async with self._client().get(self.url + self._path) as response:
            body = await response.read()
            if response.status != 200:
                raise BackendError(f"{self.name}: metadata HTTP {response.status}: {_error(body)}")
        try:
            meta = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{self.name}: metadata is not JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise BackendError(f"{self.name}: metadata is not a JSON object")
        return meta

    async def ready(self) -> bool:
        try:
            async with self._client().get(f"{self.url}{self._path}/ready") as response:
                return bool(response.status == 200)
        except Exception:
            return False

    async def infer(self, inputs: Tensors) -> dict[str, np.ndarray]:
        wire = {self.rename.get(k, k): v for k, v in inputs.items()}
        body, header = encode_request(wire, binary=self.binary)
        headers = {"Content-Type": "application/octet-stream" if header else "application/json"}
        if header is not None:
            headers[HEADER_LENGTH] = str(header)
        async with self._client().post(
            f"{self.url}{self._path}/infer", data=body, headers=headers
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise BackendError(f"{self.name}: HTTP {response.status}: {_error(raw)}")
            length = response.headers.get(HEADER_LENGTH)
        try:
            outputs = decode_response(raw, int(length) if length is not None else None)
        except (TensorError, ValueError) as exc:
            raise BackendError(f"{self.name}: bad answer: {exc}") from None
        return {self._back.get(k, k): v for k, v in outputs.items()}

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _error(body: bytes) -> str:
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace")
    if isinstance(obj, dict) and "error" in obj:
        return str(obj["error"])
    return str(obj)[:200]
