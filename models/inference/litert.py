"""LiteRT (TensorFlow Lite) for edge devices: an exporter for MLP graphs and a backend.

    tflite_bytes = mlp_to_tflite(onnx_bytes)         # MatMul/Add/activation chains only
    model = LiteRTModel(tflite_bytes)                # ai-edge-litert's Interpreter
    backend = litert_backend(model, name="failure-mlp@3#0", model_ref="failure-mlp@3", width=29)

Why an exporter of our own: the general ONNX -> TFLite route (onnx2tf) needs TensorFlow
(~600 MB) and is a build step, not a library call. The models that suit LiteRT are small dense
nets, and their ONNX graphs (skl2onnx's `MLPClassifier`, with or without a `StandardScaler`
in front) are a chain this module maps op for op onto TFLite builtins, written with the
flatc-generated `tflite` schema package: `MatMul` (+ `Add`) -> `FULLY_CONNECTED` (a
following `Relu` fused into it), `Tanh` -> `TANH`, `Sigmoid` -> `LOGISTIC`, a leading `ai.onnx.ml`
`Scaler` folded into the first layer's weights, `Cast` to float dropped. The output is the
positive-class score (the chain's last activation), as `LoadedModel.predict` reads it.

What does not map is refused with `UnsupportedGraph` naming the op: a tree ensemble
(`TreeEnsembleClassifier`, e.g. `failure-gbm`) has no TFLite builtin, so a GBM does not go to
LiteRT this way (see docs/inference.md).

The backend: one `Interpreter` per replica (an interpreter is not thread-safe, and a
`LocalBackend` runs its calls on one thread of its own); the input is resized to the batch's
row count when it changes (`resize_tensor_input` + `allocate_tensors`, ~20 µs).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgeml.models.inference.backends import SCORE, LocalBackend, Signature, Tensors, TensorSpec
from edgeml.models.inference.errors import InferenceError

__all__ = ["LiteRTModel", "UnsupportedGraph", "litert_backend", "mlp_to_tflite"]


class UnsupportedGraph(InferenceError, ValueError):
    """The ONNX graph has an op (or a shape of op) the LiteRT exporter does not map."""


# -- ONNX -> layers --------------------------------------------------------------------------


def _layers(onnx_bytes: bytes) -> tuple[int, list[tuple[np.ndarray, np.ndarray, str]]]:
    """(input width, [(W (in, out), b (out,), activation)]) from a MatMul/Add/act chain."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    consts = {
        init.name: numpy_helper.to_array(init).astype(np.float64) for init in graph.initializer
    }
    if len(graph.input) != 1:
        raise UnsupportedGraph(f"one input expected, graph has {len(graph.input)}")
    dims = graph.input[0].type.tensor_type.shape.dim
    width = dims[-1].dim_value if dims else 0
    if width <= 0:
        raise UnsupportedGraph("the input's last dimension must be fixed")
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    scale = np.ones(width)
    offset = np.zeros(width)
    current = graph.input[0].name
    while True:
        nexts = [n for n in consumers.get(current, []) if n.op_type not in _TAIL]
        if not nexts:
            break
        node = nexts[0]
        op = node.op_type
        if op == "Scaler" and not layers:  # (x - offset) * scale, folded into layer 1
            attrs = {a.name: list(a.floats) for a in node.attribute}
            offset = np.resize(np.asarray(attrs.get("offset", [0.0]), dtype=np.float64), width)
            scale = np.resize(np.asarray(attrs.get("scale", [1.0]), dtype=np.float64), width)
        elif op == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to != onnx.TensorProto.FLOAT:
                raise UnsupportedGraph("only casts to float32 are supported")
        elif op == "MatMul":
            w = consts.get(node.input[1])
            if w is None or w.ndim != 2:
                raise UnsupportedGraph("MatMul needs a constant 2-D weight")
            if not layers:  # fold the scaler: ((x - o) * s) @ W = x @ (s W) - (o s) @ W
                w, bias = scale[:, None] * w, -(offset * scale) @ w
            else:
                bias = np.zeros(w.shape[1])
            layers.append((w, bias, "none"))
        elif op == "Add" and layers:
            b = consts.get(node.input[1], consts.get(node.input[0]))
            if b is None:
                raise UnsupportedGraph("Add needs a constant bias")
            w, bias, act = layers[-1]
            layers[-1] = (w, bias + np.broadcast_to(b.reshape(-1), bias.shape), act)
        elif op in ("Relu", "Tanh", "Sigmoid") and layers and layers[-1][2] == "none":
            w, bias, _ = layers[-1]
            layers[-1] = (w, bias, op.lower())
        else:
            raise UnsupportedGraph(
                f"op {op} ({node.domain or 'ai.onnx'}) has no LiteRT mapping here; supported: "
                "Scaler (first), Cast, MatMul, Add, Relu, Tanh, Sigmoid"
            )
        current = node.output[0]
    if not layers:
        first = producer.get(graph.output[0].name)
        op = first.op_type if first is not None else "none"
        raise UnsupportedGraph(f"no dense layer found (graph ends in {op})")
    return width, layers


# After the score: skl2onnx's 1 - p / Concat / ArgMax / label branch, not needed for a score.
_TAIL = frozenset({"Sub", "Concat", "ArgMax", "ArrayFeatureExtractor", "Reshape", "ZipMap",
                   "Identity"})  # fmt: skip


# -- layers -> TFLite flatbuffer -------------------------------------------------------------


def mlp_to_tflite(onnx_bytes: bytes) -> bytes:
    """A TFLite model computing the ONNX MLP's positive-class score: input FP32 [n, width],
    output FP32 [n, 1]. Raises UnsupportedGraph for graphs that are not such a chain."""
    import importlib

    import flatbuffers
    from tflite.ActivationFunctionType import ActivationFunctionType as Act
    from tflite.BuiltinOperator import BuiltinOperator as Op
    from tflite.BuiltinOptions import BuiltinOptions
    from tflite.TensorType import TensorType

    # the schema's modules (the package's names are its classes: `tflite.Buffer` is a class)
    Buffer, Model, Operator, OperatorCode, SubGraph, Tensor, FC = (
        importlib.import_module(f"tflite.{name}")
        for name in ("Buffer", "Model", "Operator", "OperatorCode", "SubGraph", "Tensor",
                     "FullyConnectedOptions")
    )  # fmt: skip
    width, layers = _layers(onnx_bytes)
    b = flatbuffers.Builder(1024)
    buffers: list[bytes] = [b""]  # buffer 0 is the empty buffer, by convention
    tensors: list[tuple[str, list[int], int]] = []  # (name, shape, buffer index)

    def tensor(name: str, shape: list[int], data: np.ndarray | None = None) -> int:
        index = 0
        if data is not None:
            buffers.append(np.ascontiguousarray(data, dtype=np.float32).tobytes())
            index = len(buffers) - 1
        tensors.append((name, shape, index))
        return len(tensors) - 1

    ops: list[tuple[int, list[int], list[int], int | None]] = []  # (opcode, in, out, act)
    codes = [Op.FULLY_CONNECTED, Op.LOGISTIC, Op.TANH]  # opcode index 0, 1, 2
    x = tensor("input", [1, width])
    for i, (w, bias, act) in enumerate(layers):
        wt = tensor(f"w{i}", [w.shape[1], w.shape[0]], w.T)  # TFLite: [out, in]
        bt = tensor(f"b{i}", [w.shape[1]], bias)
        y = tensor(f"fc{i}", [1, w.shape[1]])
        # FULLY_CONNECTED fuses only the ReLU family (TANH fused fails to prepare, measured)
        ops.append((0, [x, wt, bt], [y], Act.RELU if act == "relu" else Act.NONE))
        x = y
        if act in ("sigmoid", "tanh"):
            y = tensor(f"{act}{i}", [1, w.shape[1]])
            ops.append((1 if act == "sigmoid" else 2, [x], [y], None))
            x = y

    def vector(start: Any, items: list[int], prepend: str = "PrependInt32") -> int:
        start(b, len(items))
        for item in reversed(items):
            getattr(b, prepend)(item)
        return int(b.EndVector())

    buffer_offsets = []
    for data in buffers:
        vec = b.CreateByteVector(data) if data else None
        Buffer.BufferStart(b)
        if vec is not None:
            Buffer.BufferAddData(b, vec)
        buffer_offsets.append(Buffer.BufferEnd(b))
    tensor_offsets = []
    for name, shape, buf in tensors:
        name_off = b.CreateString(name)
        shape_off = vector(lambda bb, n: Tensor.TensorStartShapeVector(bb, n), shape)
        dynamic = [-1 if j == 0 else d for j, d in enumerate(shape)] if buf == 0 else shape
        sig_off = vector(lambda bb, n: Tensor.TensorStartShapeSignatureVector(bb, n), dynamic)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape_off)
        Tensor.TensorAddShapeSignature(b, sig_off)
        Tensor.TensorAddType(b, TensorType.FLOAT32)
        Tensor.TensorAddBuffer(b, buf)
        Tensor.TensorAddName(b, name_off)
        tensor_offsets.append(Tensor.TensorEnd(b))
    op_offsets = []
    for code, ins, outs, fused in ops:
        ins_off = vector(lambda bb, n: Operator.OperatorStartInputsVector(bb, n), ins)
        outs_off = vector(lambda bb, n: Operator.OperatorStartOutputsVector(bb, n), outs)
        options = None
        if fused is not None:
            FC.FullyConnectedOptionsStart(b)
            FC.FullyConnectedOptionsAddFusedActivationFunction(b, fused)
            FC.FullyConnectedOptionsAddKeepNumDims(b, False)
            options = FC.FullyConnectedOptionsEnd(b)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, code)
        Operator.OperatorAddInputs(b, ins_off)
        Operator.OperatorAddOutputs(b, outs_off)
        if options is not None:
            Operator.OperatorAddBuiltinOptionsType(b, BuiltinOptions.FullyConnectedOptions)
            Operator.OperatorAddBuiltinOptions(b, options)
        op_offsets.append(Operator.OperatorEnd(b))

    def offsets(start: Any, items: list[int]) -> int:
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return int(b.EndVector())

    sg_tensors = offsets(SubGraph.SubGraphStartTensorsVector, tensor_offsets)
    sg_inputs = vector(SubGraph.SubGraphStartInputsVector, [0])
    sg_outputs = vector(SubGraph.SubGraphStartOutputsVector, [x])
    sg_ops = offsets(SubGraph.SubGraphStartOperatorsVector, op_offsets)
    sg_name = b.CreateString("main")
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, sg_tensors)
    SubGraph.SubGraphAddInputs(b, sg_inputs)
    SubGraph.SubGraphAddOutputs(b, sg_outputs)
    SubGraph.SubGraphAddOperators(b, sg_ops)
    SubGraph.SubGraphAddName(b, sg_name)
    subgraph = SubGraph.SubGraphEnd(b)
    code_offsets = []
    for code in codes:
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddVersion(b, 1)
        code_offsets.append(OperatorCode.OperatorCodeEnd(b))
    model_codes = offsets(Model.ModelStartOperatorCodesVector, code_offsets)
    model_subgraphs = offsets(Model.ModelStartSubgraphsVector, [subgraph])
    model_buffers = offsets(Model.ModelStartBuffersVector, buffer_offsets)
    description = b.CreateString("edgeml mlp_to_tflite")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, model_codes)
    Model.ModelAddSubgraphs(b, model_subgraphs)
    Model.ModelAddDescription(b, description)
    Model.ModelAddBuffers(b, model_buffers)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# -- the backend -----------------------------------------------------------------------------


class LiteRTModel:
    """A `.tflite` model on ai-edge-litert's `Interpreter`: `predict((n, k)) -> (n,)` scores.
    Not thread-safe (one per replica); `threads` is the interpreter's thread count."""

    def __init__(self, model: bytes, *, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=model, num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.width = int(self._input["shape"][-1])
        self._rows = int(self._input["shape"][0])
        self._lock = threading.Lock()  # guards misuse from several threads, costs ~0.1 µs

    def predict(self, features: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.width:
            raise InferenceError(f"LiteRT model takes (n, {self.width}), got {list(x.shape)}")
        with self._lock:
            if len(x) != self._rows:
                self._interpreter.resize_tensor_input(self._input["index"], [len(x), self.width])
                self._interpreter.allocate_tensors()
                self._rows = len(x)
            self._interpreter.set_tensor(self._input["index"], x)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output["index"])
        return np.asarray(out, dtype=np.float64).reshape(len(x), -1)[:, -1]


def litert_backend(
    model: LiteRTModel,
    *,
    name: str,
    model_ref: str,
    input_name: str = "input",
    metadata: Mapping[str, Any] | None = None,
    max_pending: int = 8,
) -> LocalBackend:
    """One LiteRT replica as an engine backend: takes `input_name` FP32 [-1, width], answers
    `score` FP64 [-1], like `onnx_backend` (so pools can mix ONNX and LiteRT replicas)."""

    def predict(inputs: Tensors) -> dict[str, np.ndarray]:
        return {SCORE: model.predict(inputs[input_name])}

    return LocalBackend(
        name=name,
        model_ref=model_ref,
        predict=predict,
        signature=Signature(
            inputs=(TensorSpec(input_name, "FP32", (-1, model.width)),),
            outputs=(TensorSpec(SCORE, "FP64", (-1,)),),
        ),
        metadata={"kind": "litert", **(metadata or {})},
        max_pending=max_pending,
    )
