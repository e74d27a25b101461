"""The OIP v2 server in-process (aiohttp test client): every route, its errors, the token, and
every answer checked against docs/oip.openapi.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edgeml.app.serve import build_server
from edgeml.models.inference import TaskConfig
from edgeml.models.inference.tensors import HEADER_LENGTH, decode_response, encode_request
from edgeml.models.registry import ModelRegistry, SessionCache
from edgeml.models.shipped import seed_registry
from tests.unit.models.inference.oip_schema import OipSpec

M = "/v2/models/{name}"
MV = "/v2/models/{name}/versions/{version}"


@pytest.fixture(scope="module")
def spec() -> OipSpec:
    return OipSpec()


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    root = tmp_path / "artifacts"
    seed_registry(root)
    return ModelRegistry(root, sessions=SessionCache())


async def _client(registry: ModelRegistry, token: str | None = None) -> TestClient:
    server = build_server(registry, replicas=2, token=token, config=TaskConfig(probe_interval_s=0))
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    return client


def _body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}]}  # fmt: skip


async def test_routes_answer_as_documented(registry, spec):
    x, _ = registry.holdout("failure-gbm")
    want = registry.promoted_handle().predict(x[:20])
    client = await _client(registry)
    try:
        for path, template in [("/v2", "/v2"), ("/v2/health/live", "/v2/health/live"),
                               ("/v2/health/ready", "/v2/health/ready")]:  # fmt: skip
            r = await client.get(path)
            spec.check("GET", template, r.status, await r.json())
            assert r.status == 200
        for name in ("failure-gbm", "failure"):
            r = await client.get(f"/v2/models/{name}")
            meta = await r.json()
            spec.check("GET", M, r.status, meta)
            assert meta["name"] == "failure-gbm" and meta["versions"] == ["2"]
            assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 29]}]
            r = await client.get(f"/v2/models/{name}/versions/2/ready")
            spec.check("GET", MV + "/ready", r.status, await r.json())
            assert r.status == 200
            r = await client.post(f"/v2/models/{name}/infer", json=_body(x[:20]))
            out = await r.json()
            spec.check("POST", M + "/infer", r.status, out)
            assert out["model_name"] == "failure-gbm" and out["model_version"] == "2"
            np.testing.assert_allclose(out["outputs"][0]["data"], want, rtol=0, atol=1e-12)
        r = await client.get(MV.format(name="failure-gbm", version="2"))
        spec.check("GET", MV, r.status, await r.json())
        r = await client.get("/v2/models/failure/ready")
        spec.check("GET", M + "/ready", r.status, await r.json())
    finally:
        await client.close()


async def test_binary_tensors_both_ways(registry):
    x, _ = registry.holdout("failure-gbm")
    client = await _client(registry)
    try:
        body, header = encode_request({"input": x[:64]}, binary=True)
        r = await client.post(
            "/v2/models/failure-gbm/versions/2/infer",
            data=body,
            headers={HEADER_LENGTH: str(header), "Content-Type": "application/octet-stream"},
        )
        assert r.status == 200 and r.content_type == "application/octet-stream"
        out = decode_response(await r.read(), int(r.headers[HEADER_LENGTH]))
        np.testing.assert_array_equal(out["score"], registry.promoted_handle().predict(x[:64]))
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("method", "path", "template", "body", "status", "message"),
    [
        ("GET", "/v2/models/nope", M, None, 404, "unknown model 'nope'"),
        ("GET", "/v2/models/failure-gbm/versions/9", MV, None, 404, "no served version '9'"),
        ("GET", "/v2/models/nope/ready", M + "/ready", None, 404, "unknown model"),
        ("POST", "/v2/models/nope/infer", M + "/infer", "{}", 404, "unknown model"),
        ("POST", "/v2/models/failure/infer", M + "/infer", "{", 400, "not JSON"),
        ("POST", "/v2/models/failure/infer", M + "/infer", '{"inputs": []}', 400, "non-empty"),
        ("POST", "/v2/models/failure/infer", M + "/infer",
         json.dumps(_body(np.zeros((2, 5), np.float32))), 400, "shape [-1, 29]"),
        ("POST", "/v2/models/failure/infer", M + "/infer",
         json.dumps({"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP32",
                                 "data": [0.0] * 29}]}), 400, "needs input 'input'"),
        ("POST", "/v2/models/failure/infer", M + "/infer",
         json.dumps({**_body(np.zeros((1, 29), np.float32)), "outputs": [{"name": "prob"}]}),
         400, "unknown output"),
    ],
)  # fmt: skip
async def test_errors_are_oip_error_bodies(registry, spec, method, path, template, body, status,
                                           message):  # fmt: skip
    client = await _client(registry)
    try:
        r = await client.request(method, path, data=body)
        got = await r.json()
        spec.check(method, template, r.status, got)
        assert r.status == status and message in got["error"]
        r = await client.get("/v2/nowhere")
        assert r.status == 404 and "error" in await r.json()
    finally:
        await client.close()


async def test_bearer_token(registry, spec):
    client = await _client(registry, token="s3cret")
    try:
        r = await client.get("/v2/health/ready")
        assert r.status == 200  # probes need no token
        r = await client.get("/v2/models/failure")
        spec.check("GET", M, r.status, await r.json())
        assert r.status == 401
        r = await client.get("/v2/models/failure", headers={"Authorization": "Bearer s3cret"})
        assert r.status == 200
        r = await client.get("/v2/models/failure", headers={"Authorization": "Bearer wrong"})
        assert r.status == 401
    finally:
        await client.close()


async def test_every_backend_down_is_503_with_the_reason(registry, spec):
    server = build_server(registry, replicas=2, config=TaskConfig(probe_interval_s=0))
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    try:
        for m in server.engine.tasks["failure-gbm"].members:
            m.health.breaker.trip("drill: taken out by the test")
        r = await client.post("/v2/models/failure/infer", json=_body(np.zeros((1, 29), np.float32)))
        got = await r.json()
        spec.check("POST", M + "/infer", r.status, got)
        assert r.status == 503 and "drill: taken out by the test" in got["error"]
        for path, template in [("/v2/health/ready", "/v2/health/ready"),
                               ("/v2/models/failure/ready", M + "/ready")]:  # fmt: skip
            r = await client.get(path)
            spec.check("GET", template, r.status, await r.json())
            assert r.status == 503
    finally:
        await client.close()


def test_no_promoted_model_is_a_one_line_error(tmp_path):
    from edgeml.app.errors import ConfigError

    with pytest.raises(ConfigError, match="no promoted model to serve"):
        build_server(ModelRegistry(tmp_path / "empty", sessions=SessionCache()))


async def test_prometheus_metrics(registry):
    server = build_server(registry, replicas=2, config=TaskConfig(probe_interval_s=0))
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    try:
        body = _body(np.zeros((3, 29), np.float32))
        for _ in range(4):
            assert (await client.post("/v2/models/failure/infer", json=body)).status == 200
        first = server.engine.tasks["failure-gbm"].members[0]
        first.health.breaker.trip("drill")
        r = await client.get("/metrics")
        text = await r.text()
        assert r.status == 200 and r.content_type == "text/plain"
        calls = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("edgeml_inference_backend_calls_total{") and 'outcome="ok"' in line
        ]
        assert sum(calls) == 4  # probes are not calls
        assert 'edgeml_inference_requests_total{outcome="ok",task="failure-gbm"} 4.0' in text
        name = first.backend.name
        assert f'edgeml_inference_breaker_state{{backend="{name}",task="failure-gbm"}} 2.0' in text
        assert (
            f'edgeml_inference_backend_healthy{{backend="{name}",task="failure-gbm"}} 0.0' in text
        )
        assert 'edgeml_inference_task_ready{task="failure-gbm"} 1.0' in text
        assert "edgeml_inference_backend_seconds_bucket{" in text
    finally:
        await client.close()


async def test_remote_backend_token_rename_and_errors(registry):
    from edgeml.models.inference import BackendError, RemoteBackend

    x, _ = registry.holdout("failure-gbm")
    client = await _client(registry, token="s3cret")
    url = str(client.make_url("")).rstrip("/")
    try:
        with pytest.raises(BackendError, match="metadata HTTP 401: a bearer token is required"):
            await RemoteBackend.connect(url, "failure")
        remote = await RemoteBackend.connect(
            url, "failure", token="s3cret", rename={"x": "input", "p": "score"}, binary=False
        )
        assert [s.name for s in remote.signature.inputs] == ["x"]
        assert remote.model_ref == "failure-gbm@2" and await remote.ready()
        out = await remote.infer({"x": x[:10]})
        np.testing.assert_array_equal(out["p"], registry.promoted_handle().predict(x[:10]))
        with pytest.raises(BackendError, match=r"HTTP 400: failure-gbm: .*shape \[-1, 29\]"):
            await remote.infer({"x": np.zeros((2, 3), np.float32)})
        await remote.close()
        gone = RemoteBackend(url, "nope", token="s3cret")
        assert not await gone.ready()
        with pytest.raises(BackendError, match="HTTP 404"):
            await gone.infer({"input": x[:1]})
        await gone.close()
    finally:
        await client.close()
