"""Open Inference Protocol v2 tensors (KServe v2 / Triton REST) <-> numpy, both directions.

One codec for the server (`edgeml serve`) and the client (`RemoteBackend`), so both read and
write the same bodies. A tensor is `{"name", "shape", "datatype", "data"}` with `data` flat
(row-major) or nested; Triton's binary extension is supported too: the JSON header is the first
`Inference-Header-Content-Length` bytes of the body, and each binary tensor's raw little-endian
bytes follow in order, sized by its `parameters.binary_data_size`. `tritonclient.http` sends
inputs that way by default and asks for binary outputs (`binary_data_output`) when it names no
outputs, so a server without the extension would answer none of its default calls.

>>> body, header = encode_request({"input": np.ones((2, 3), np.float32)}, binary=False)
>>> header is None, decode_request(body, None).inputs["input"].shape
(True, (2, 3))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeml.models.inference.errors import TensorError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "InferRequest",
    "datatype_of",
    "decode_request",
    "decode_response",
    "dtype_of",
    "encode_request",
    "encode_response",
]

HEADER_LENGTH = "Inference-Header-Content-Length"

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_BY_DTYPE = {dt: name for name, dt in DATATYPES.items()}
_MAX_ELEMENTS = 1 << 26  # 64 Mi elements: a bigger tensor is refused before it is allocated


def dtype_of(datatype: object) -> np.dtype[Any]:
    """The numpy dtype of an OIP datatype; a clear error listing the valid ones otherwise."""
    try:
        return DATATYPES[str(datatype)] if isinstance(datatype, str) else DATATYPES[""]
    except KeyError:
        raise TensorError(
            f"unsupported datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of a numpy array."""
    dt = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    try:
        return _BY_DTYPE[np.dtype(dt)]
    except KeyError:
        raise TensorError(f"numpy dtype {array.dtype} has no OIP datatype") from None


@dataclass(slots=True)
class InferRequest:
    """A decoded infer request: input tensors, and how each output should be sent back."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] = field(default_factory=list)  # empty: every output
    binary_outputs: set[str] = field(default_factory=set)
    binary_default: bool = False  # `binary_data_output`: outputs not named come back binary
    parameters: dict[str, Any] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        return name in self.binary_outputs or (self.binary_default and name not in self.outputs)


def _or(value: Any, default: Any) -> Any:
    """`value`, or `default` when absent or null: `{}` or `[]` of the wrong kind stays wrong
    (an empty list is not an absent parameters object)."""
    return default if value is None else value


def _split(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        head, rest = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise TensorError(
                f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes"
            )
        head, rest = body[:header_length], body[header_length:]
    try:
        obj = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TensorError(f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise TensorError("body must be a JSON object")
    return obj, rest


def _shape(obj: Mapping[str, Any], name: str) -> tuple[int, ...]:
    shape = obj.get("shape")
    # 2.0 is an integer to JSON Schema (and to JavaScript clients): accepted as 2
    if not isinstance(shape, list) or not all(
        isinstance(d, int | float) and not isinstance(d, bool) and d >= 0 and float(d).is_integer()
        for d in shape
    ):
        raise TensorError(f"tensor {name!r}: shape must be a list of non-negative integers")
    shape = [int(d) for d in shape]
    size = math.prod(shape)
    if size > _MAX_ELEMENTS:
        raise TensorError(f"tensor {name!r}: {size} elements is more than {_MAX_ELEMENTS}")
    return tuple(shape)


def _tensor(obj: Any, rest: bytes, offset: int, where: str) -> tuple[str, np.ndarray, int]:
    """One tensor of a request or response; returns (name, array, new binary offset)."""
    if not isinstance(obj, dict):
        raise TensorError(f"every {where} must be an object with name, shape, datatype")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"every {where} needs a non-empty string name")
    datatype = obj.get("datatype")
    if datatype == "BYTES":
        raise TensorError(f"tensor {name!r}: BYTES tensors are not supported here")
    dt = dtype_of(datatype)
    shape = _shape(obj, name)
    params = _or(obj.get("parameters"), {})
    if not isinstance(params, dict):
        raise TensorError(f"tensor {name!r}: parameters must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(rest):
            raise TensorError(f"tensor {name!r}: binary_data_size {size!r} overruns the body")
        raw = rest[offset : offset + size]
        if size != math.prod(shape) * dt.itemsize:
            raise TensorError(
                f"tensor {name!r}: {size} bytes do not hold shape {list(shape)} of {datatype}"
            )
        return name, np.frombuffer(raw, dtype=dt).reshape(shape).copy(), offset + size
    if "data" not in obj:
        raise TensorError(f"tensor {name!r} has no data (nor binary_data_size)")
    try:
        arr = np.asarray(obj["data"], dtype=dt)
    except (TypeError, ValueError, OverflowError):
        raise TensorError(f"tensor {name!r}: data is not a (nested) list of {datatype}") from None
    if arr.size != math.prod(shape):
        raise TensorError(f"tensor {name!r}: {arr.size} values do not fill shape {list(shape)}")
    return name, arr.reshape(shape), offset


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header + binary tensors)."""
    obj, rest = _split(body, header_length)
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise TensorError("inputs must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        name, arr, offset = _tensor(raw, rest, offset, "input")
        if name in inputs:
            raise TensorError(f"input {name!r} is given twice")
        inputs[name] = arr
    request = InferRequest(inputs)
    rid = obj.get("id")
    if rid is not None and not isinstance(rid, str):
        raise TensorError("id must be a string")
    request.id = rid
    params = _or(obj.get("parameters"), {})
    if not isinstance(params, dict):
        raise TensorError("parameters must be an object")
    request.parameters = params
    request.binary_default = bool(params.get("binary_data_output", False))
    outputs = _or(obj.get("outputs"), [])
    if not isinstance(outputs, list):
        raise TensorError("outputs must be a list")
    for out in outputs:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise TensorError("every requested output needs a string name")
        out_params = _or(out.get("parameters"), {})
        if not isinstance(out_params, dict):
            raise TensorError(f"output {out['name']!r}: parameters must be an object")
        request.outputs.append(out["name"])
        if bool(out_params.get("binary_data", False)):
            request.binary_outputs.add(out["name"])
    return request


def _encode(
    tensors: Mapping[str, np.ndarray], binary: set[str] | bool
) -> tuple[list[dict[str, Any]], list[bytes]]:
    specs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, value in tensors.items():
        arr = np.asarray(value)
        spec: dict[str, Any] = {"name": name, "shape": list(arr.shape)}
        spec["datatype"] = datatype_of(arr)
        if binary is True or (isinstance(binary, set) and name in binary):
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            spec["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            spec["data"] = arr.reshape(-1).tolist()
        specs.append(spec)
    return specs, blobs


def _join(obj: dict[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, int | None]:
    head = json.dumps(obj, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def encode_request(
    inputs: Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] = (),
    binary: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """An infer request body and its header length (None: plain JSON). `binary` sends the
    inputs raw and asks for raw outputs: about 4x fewer bytes than JSON floats, no float
    printing or parsing."""
    specs, blobs = _encode(inputs, binary)
    obj: dict[str, Any] = {"inputs": specs}
    if request_id is not None:
        obj["id"] = request_id
    if outputs:
        obj["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    elif binary:
        obj["parameters"] = {"binary_data_output": True}
    return _join(obj, blobs)


def encode_response(
    model_name: str,
    model_version: str,
    outputs: Mapping[str, np.ndarray],
    request: InferRequest,
) -> tuple[bytes, int | None]:
    """The response body for `request` (only the outputs it asked for, binary where asked)."""
    if request.outputs:
        missing = [n for n in request.outputs if n not in outputs]
        if missing:
            raise TensorError(
                f"unknown output(s) {', '.join(missing)}; this model has {', '.join(outputs)}"
            )
        outputs = {n: outputs[n] for n in request.outputs}
    binary = {n for n in outputs if request.wants_binary(n)}
    specs, blobs = _encode(outputs, binary)
    obj: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        obj["id"] = request.id
    obj["outputs"] = specs
    return _join(obj, blobs)


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """The output tensors of an infer response body."""
    obj, rest = _split(body, header_length)
    if "error" in obj:
        raise TensorError(f"server error: {obj['error']}")
    raw_outputs = obj.get("outputs")
    if not isinstance(raw_outputs, list):
        raise TensorError("response has no outputs list")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_outputs:
        name, arr, offset = _tensor(raw, rest, offset, "output")
        out[name] = arr
    return out
