"""The OIP v2 tensor codec: JSON and binary bodies both ways, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeml.models.inference import TensorError
from edgeml.models.inference.tensors import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

X = np.arange(12, dtype=np.float32).reshape(4, 3) / 7


@pytest.mark.parametrize("binary", [False, True])
def test_request_round_trip(binary):
    body, header = encode_request({"input": X, "ids": np.arange(4)}, binary=binary, request_id="r1")
    assert (header is not None) == binary
    req = decode_request(body, header)
    np.testing.assert_array_equal(req.inputs["input"], X)
    assert req.inputs["input"].dtype == np.float32 and req.inputs["ids"].dtype == np.int64
    assert req.id == "r1" and req.binary_default == binary


@pytest.mark.parametrize("binary", [False, True])
def test_response_round_trip(binary):
    body, header = encode_request({"input": X}, binary=binary)
    req = decode_request(body, header)
    scores = np.linspace(0, 1, 4)
    out, out_header = encode_response("m", "1", {"score": scores}, req)
    assert (out_header is not None) == binary
    np.testing.assert_array_equal(decode_response(out, out_header)["score"], scores)


def test_nested_json_data_and_requested_outputs():
    body = {
        "inputs": [
            {"name": "input", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}
        ],
        "outputs": [{"name": "score"}],
    }
    req = decode_request(json.dumps(body).encode(), None)
    assert req.inputs["input"].tolist() == [[1.0, 2.0], [3.0, 4.0]] and req.outputs == ["score"]
    out, header = encode_response("m", "1", {"score": np.zeros(2), "extra": np.ones(2)}, req)
    assert header is None and [o["name"] for o in json.loads(out)["outputs"]] == ["score"]
    req.outputs = ["nope"]
    with pytest.raises(TensorError, match="unknown output"):
        encode_response("m", "1", {"score": np.zeros(2)}, req)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP99", "data": [1, 2]}]}', "FP32"),
        (b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}', "fill"),
        (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}', "shape"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}',
            "list of",
        ),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', "no data"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}', "BYTES"),
        (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', "name"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
            b' "outputs": [{"name": "", "parameters": [null]}]}',
            "parameters must be an object",
        ),  # found by schemathesis: was a 500
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
            b' "parameters": [1]}',
            "parameters must be an object",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
            b' "outputs": {"name": "y"}}',
            "outputs must be a list",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
            b' "outputs": {}}',
            "outputs must be a list",
        ),  # found by schemathesis: was accepted
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],'
            b' "parameters": []}]}',
            "parameters must be an object",
        ),
        (
            b'{"id": 7, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
            "id must be a string",
        ),
    ],
)
def test_bad_requests_get_one_line_errors(body, message):
    with pytest.raises(TensorError, match=message):
        decode_request(body, None)


def test_binary_sizes_are_checked():
    body, header = encode_request({"input": X}, binary=True)
    assert header is not None
    with pytest.raises(TensorError, match="overruns"):
        decode_request(body[:-4], header)
    with pytest.raises(TensorError, match="Header-Content-Length"):
        decode_request(body, len(body) + 1)
