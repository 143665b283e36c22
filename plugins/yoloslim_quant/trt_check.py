"""Static check of a QDQ ONNX graph against TensorRT's explicit-quantization rules (no TensorRT needed).

TensorRT (10.x) builds an INT8 engine from Q/DQ nodes it finds in the graph ("explicit quantization"). It
accepts, and this checker enforces:

1. Only ONNX-domain ``QuantizeLinear``/``DequantizeLinear`` carry quantization: no operator-format ops
   (``QLinearConv``, ``ConvInteger``, ``QLinearMul``, ...) and no ``com.microsoft`` Q/DQ.
2. Signed 8-bit: every zero point is an explicit INT8 tensor (a missing zero point means UINT8).
3. Symmetric: every zero point is 0.
4. Scales are constant, finite and positive.
5. Activations are quantized per tensor (scalar scale).
6. Weights are quantized per tensor or per output channel: axis 0 for Conv/MatMul/Gemm weights (1 for
   ConvTranspose), one scale per channel.
7. Every ``QuantizeLinear`` feeds only ``DequantizeLinear`` nodes with the same scale and zero point (Q/DQ pairs).
8. No INT32 (bias) dequantization: TensorRT quantizes the bias itself from the float bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .graph import consumers_of

_Q = "QuantizeLinear"
_DQ = "DequantizeLinear"
_OPERATOR_FORMAT = {
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "QLinearAdd",
    "QLinearMul",
    "QLinearSigmoid",
    "QLinearConcat",
    "QLinearLeakyRelu",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSoftmax",
    "QGemm",
    "QLinearResize",
}
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1, "Gemm": 0}


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _dtype_name(t: np.ndarray | None) -> str:
    return "missing (defaults to uint8)" if t is None else str(t.dtype)


def check_tensorrt_qdq(model: str | Path | onnx.ModelProto) -> list[str]:
    """Return every violation of TensorRT's explicit-quantization rules in a QDQ graph (empty: the graph is fine).

    Args:
        model: ONNX file or model.

    Returns:
        One line per problem, naming the node, the rule and what was found.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    consts = _constants(model)
    consumers = consumers_of(graph)
    problems: list[str] = []
    qdq = 0
    for node in graph.node:
        where = f"node '{node.name or node.output[0]}' ({node.op_type})"
        if node.op_type in _OPERATOR_FORMAT or (node.domain not in ("", "ai.onnx") and node.op_type in (_Q, _DQ)):
            problems.append(
                f"{where}: operator-format or contrib quantized op (domain '{node.domain or 'ai.onnx'}'); "
                "TensorRT needs ONNX QuantizeLinear/DequantizeLinear (QDQ format)"
            )
            continue
        if node.op_type not in (_Q, _DQ):
            continue
        qdq += 1
        scale = consts.get(node.input[1])
        zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale is None:
            problems.append(f"{where}: scale '{node.input[1]}' is not a constant")
            continue
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{where}: scales must be finite and > 0, found min {float(np.min(scale)):.3g}")
        if zero is None or zero.dtype != np.int8:
            if node.op_type == _DQ and zero is not None and zero.dtype == np.int32:
                problems.append(
                    f"{where}: INT32 dequantization (a quantized bias); keep the bias float, TensorRT "
                    "quantizes it itself"
                )
                continue
            problems.append(
                f"{where}: zero point must be an explicit int8 tensor, found {_dtype_name(zero)} "
                "(TensorRT supports signed INT8 only)"
            )
        elif np.any(zero != 0):
            problems.append(
                f"{where}: asymmetric quantization, zero point {int(np.abs(zero).max())} != 0; TensorRT "
                "needs symmetric scales (zero point 0)"
            )
        is_weight = node.op_type == _DQ and node.input[0] in consts
        if is_weight:
            users = consumers.get(node.output[0], [])
            if scale.size > 1:
                for user in users:
                    want = _WEIGHT_AXIS.get(user.op_type)
                    shape = consts[node.input[0]].shape
                    ax = axis if axis >= 0 else axis + len(shape)
                    if want is not None and ax != want:
                        problems.append(
                            f"{where}: per-channel weight scales on axis {ax}, TensorRT needs the "
                            f"output-channel axis {want} for {user.op_type}"
                        )
                    elif scale.size != shape[ax]:
                        problems.append(f"{where}: {scale.size} scales for {shape[ax]} channels on axis {ax}")
        elif scale.size > 1:
            problems.append(
                f"{where}: activation quantized per channel ({scale.size} scales); TensorRT quantizes "
                "activations per tensor"
            )
        if node.op_type == _Q:
            for user in consumers.get(node.output[0], []):
                if user.op_type != _DQ:
                    problems.append(
                        f"{where}: output feeds {user.op_type} '{user.name}', not a DequantizeLinear "
                        "(TensorRT needs Q/DQ pairs)"
                    )
                    continue
                s2 = consts.get(user.input[1])
                z2 = consts.get(user.input[2]) if len(user.input) > 2 and user.input[2] else None
                if (
                    s2 is None
                    or not np.array_equal(s2, scale)
                    or (z2 is None) != (zero is None)
                    or (z2 is not None and not np.array_equal(z2, zero))
                ):
                    problems.append(f"{where}: its DequantizeLinear '{user.name}' uses another scale or zero point")
    if qdq == 0:
        problems.append(
            "the graph has no QuantizeLinear/DequantizeLinear nodes; it is not an explicitly quantized model"
        )
    return problems
