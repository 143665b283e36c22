"""Counting: parameters and GFLOPs of a torch model or an ONNX graph, at batch 1 and one square image size.

Both counts are 2 x the multiply-accumulates of convolutions and matrix products, so a ``.pt`` and its ONNX export
count the same: :func:`torch_counts` through ``torch.utils.flop_counter``, :func:`onnx_counts` by walking the graph
(quantized ops included, weights followed through ``DequantizeLinear`` and casts) with shapes from ONNX shape
inference, completed by one ONNX Runtime run where contrib ops stop it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yoloslim.errors import ModelError

LOGGER = logging.getLogger("yoloslim.measurement")

# Ops whose multiply-accumulates are counted, and which of their inputs are weights (parameters).
_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "QLinearConv": (3, 8),
    "ConvInteger": (1,),
    "MatMulInteger": (0, 1),
    "QLinearMatMul": (0, 3),
}
# Normalisation layers: their scale and bias are parameters of the torch model too (running stats are buffers).
_NORM_INPUTS: dict[str, tuple[int, ...]] = {
    "BatchNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
    "GroupNormalization": (1, 2),
}
# Ops a weight may pass through between its initializer and the op that uses it (QDQ graphs, exporters' casts).
_WEIGHT_PASSTHROUGH = {"DequantizeLinear", "Identity", "Cast", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}


def torch_counts(model: torch.nn.Module, imgsz: int) -> tuple[int, float]:
    """Count parameters and GFLOPs of a torch model on one batch-1 ``imgsz`` x ``imgsz`` input.

    Args:
        model: The model, in the form that will run (fused for Ultralytics models).
        imgsz: Square input size.

    Returns:
        ``(params, gflops)``: the sum of parameter sizes, and FLOPs of one forward pass as counted by
        ``torch.utils.flop_counter.FlopCounterMode`` (2 x MACs of convolutions and matrix products) / 1e9.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    channels = next((m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)), 3)
    x = torch.zeros(1, channels, imgsz, imgsz)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    # Detect heads cache anchors made under inference_mode; autograd (training, tracing) rejects those tensors,
    # so drop the cache and let the next forward rebuild it.
    for m in model.modules():
        if hasattr(m, "anchors") and hasattr(m, "shape"):
            m.shape = None
    return params, counter.get_total_flops() / 1e9


def _image_input(model: Any) -> tuple[str, list[int | str]]:
    """Return the name and dims (int, or the symbol's name for a dynamic dim) of an ONNX graph's first input."""
    initializers = {t.name for t in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in initializers)
    shape = graph_input.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]
    return graph_input.name, dims


def onnx_counts(path: str | Path, imgsz: int) -> tuple[int, float]:
    """Count parameters and GFLOPs of an ONNX graph at batch 1 and ``imgsz``, matching :func:`torch_counts`.

    FLOPs are 2 x MACs of Conv, ConvTranspose, Gemm, MatMul and their quantized forms (QLinearConv, ConvInteger,
    MatMulInteger, QLinearMatMul), with shapes from ONNX shape inference, completed by one ONNX Runtime run where
    contrib ops (QLinearSigmoid, QLinearAdd, ...) stop it. Parameters are the sizes of the
    initializers that are weights or biases of those ops or scales/biases of normalisation ops, followed through
    DequantizeLinear and casts, each counted once; constants such as anchors and strides are not parameters.

    Args:
        path: ONNX file.
        imgsz: Square input size; dynamic input dims are fixed to batch 1 and this size.

    Returns:
        ``(params, gflops)``.

    Raises:
        ModelError: If the file cannot be read as ONNX, or its input is fixed to another size or batch.
    """
    params, per_node = _onnx_graph_counts(path, imgsz)
    return params, 2 * sum(per_node.values()) / 1e9


def _onnx_graph_counts(path: str | Path, imgsz: int) -> tuple[int, dict[str, int]]:
    """:func:`onnx_counts`' walk: parameters, and multiply-accumulates by node name."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e}); export it again") from e

    input_name, dims = _image_input(model)
    if len(dims) != 4:
        raise ModelError(f"{path}: input '{input_name}' has shape {dims}, expected NCHW; export an image model")
    wanted = [1, None, imgsz, imgsz]
    graph_input = next(i for i in model.graph.input if i.name == input_name)
    for axis, (dim, want, proto) in enumerate(zip(dims, wanted, graph_input.type.tensor_type.shape.dim)):
        if want is None:
            continue
        if isinstance(dim, int) and dim != want:
            what = "batch" if axis == 0 else "imgsz"
            raise ModelError(
                f"{path}: input is fixed to shape {dims} but measurement runs batch 1 at imgsz={imgsz}; measure "
                f"at the exported size or export again with {what}={want} (or dynamic=True)"
            )
        if not isinstance(dim, int):
            proto.Clear()
            proto.dim_value = want

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, list[int] | None] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        shape = info.type.tensor_type.shape
        dims_ = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
        shapes[info.name] = None if any(d is None for d in dims_) else dims_
    initializers = {t.name: t for t in graph.initializer}
    for name, tensor in initializers.items():
        shapes[name] = list(tensor.dims)
    producers = {out: node for node in graph.node for out in node.output}

    def weight_size(name: str) -> tuple[str, int] | None:
        """Follow a tensor back to the initializer (or Constant) it comes from; return its name and size."""
        while name:
            if name in initializers:
                return name, math.prod(initializers[name].dims)
            node = producers.get(name)
            if node is None:
                return None
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                return (name, math.prod(value.dims)) if value is not None else None
            if node.op_type not in _WEIGHT_PASSTHROUGH:
                return None
            name = node.input[0]
        return None

    compute = [node for node in graph.node if node.op_type in _WEIGHT_INPUTS]
    missing = sorted({n for node in compute for n in _shape_inputs(node) if shapes.get(n) is None})
    if missing:
        # Contrib ops (QLinearSigmoid, QLinearAdd, ... in com.microsoft) stop ONNX shape inference; one run in
        # ONNX Runtime gives the real shapes of the tensors still unknown.
        shapes.update(_runtime_shapes(model, missing, input_name, imgsz))

    counted: set[str] = set()
    params = 0
    per_node: dict[str, int] = {}
    unknown = 0
    for node in graph.node:
        inputs = _WEIGHT_INPUTS.get(node.op_type) or _NORM_INPUTS.get(node.op_type)
        if inputs is None:
            continue
        for index in inputs:
            if index < len(node.input) and node.input[index]:
                found = weight_size(node.input[index])
                if found and found[0] not in counted:
                    counted.add(found[0])
                    params += found[1]
        if node.op_type in _NORM_INPUTS:
            continue
        node_macs = _node_macs(node, shapes.get)
        if node_macs is None:
            unknown += 1
        else:
            per_node[node.name] = per_node.get(node.name, 0) + node_macs
    if unknown:
        LOGGER.warning("%s: shapes of %d compute nodes could not be inferred; GFLOPs is a lower bound", path, unknown)
    return params, per_node


def onnx_node_macs(path: str | Path, imgsz: int) -> dict[str, int]:
    """Multiply-accumulates of every compute node of an ONNX graph at batch 1 and ``imgsz``, by node name.

    The nodes and shapes are :func:`onnx_counts`' (its GFLOPs are 2 x the sum of these). Used to put MACs beside
    measured time per block (:mod:`~yoloslim.measurement.profile`).
    """
    return _onnx_graph_counts(path, imgsz)[1]


def _shape_inputs(node: Any) -> list[str]:
    """Names of the tensors whose shapes :func:`_node_macs` needs for one compute node."""
    if node.op_type == "QLinearConv":
        return [node.input[3], node.output[0]]
    if node.op_type in {"Conv", "ConvInteger"}:
        return [node.input[1], node.output[0]]
    if node.op_type == "ConvTranspose":
        return [node.input[0], node.input[1]]
    return [node.input[0], node.output[0]]


def _runtime_shapes(model: Any, names: Sequence[str], input_name: str, imgsz: int) -> dict[str, list[int] | None]:
    """Shapes of intermediate tensors from one ONNX Runtime run on a zero input (batch 1, imgsz)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    graph_input = next(i for i in probe.graph.input if i.name == input_name)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(list(names), {input_name: np.zeros(dims, dtype=dtype)})
    except Exception as e:  # counting then stays a lower bound, with a warning
        LOGGER.warning("could not run the graph to find %d tensor shapes (%s: %s)", len(names), type(e).__name__, e)
        return {}
    return {n: list(v.shape) for n, v in zip(names, values)}


def _node_macs(node: Any, shape: Callable[[str], list[int] | None]) -> int | None:
    """Multiply-accumulates of one compute node, or None when a shape it needs is unknown."""
    op = node.op_type
    if op in {"Conv", "ConvInteger", "QLinearConv"}:
        w = shape(node.input[3 if op == "QLinearConv" else 1])
        y = shape(node.output[0])
        return None if w is None or y is None else math.prod(y) * math.prod(w[1:])
    if op == "ConvTranspose":
        x, w = shape(node.input[0]), shape(node.input[1])
        return None if w is None or x is None else math.prod(x) * math.prod(w[1:])
    if op == "Gemm":
        a = shape(node.input[0])
        y = shape(node.output[0])
        if a is None or y is None:
            return None
        trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
        k = a[0] if trans_a else a[1]
        return math.prod(y) * k
    # MatMul, MatMulInteger, QLinearMatMul: K is the last dim of A.
    a = shape(node.input[0])
    y = shape(node.output[0])
    return None if a is None or y is None or not a else math.prod(y) * a[-1]
