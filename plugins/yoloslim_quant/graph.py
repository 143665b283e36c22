"""ONNX graph helpers for quantization: the head's decode region, quantizable layers, the DFL rewrite, metadata.

A YOLO detection graph is the network (backbone, neck and the head's convolutions) followed by the decode: the
reshapes and concatenations of the per-level outputs, the DFL (softmax over 16 bins and their expectation), the
anchor arithmetic and the class sigmoid. The decode mixes box pixels (0..imgsz) and class probabilities (0..1) in
one tensor, so it must stay float: one INT8 scale for both rounds every score to zero. It is found structurally:
every node from which no learned convolution can be reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

YOLOSLIM_KEY = "yoloslim"


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def consumers_of(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Map each tensor name to the nodes that read it."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return consumers


def is_dfl_conv(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """Whether ``node`` is the DFL's fixed 1x1 convolution (weights 0, 1, ..., reg_max - 1)."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    w = numpy_helper.to_array(inits[node.input[1]])
    return w.shape[0] == 1 and w.size > 1 and np.array_equal(w.reshape(-1), np.arange(w.size, dtype=w.dtype))


def quantizable_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the layers INT8 quantizes for speed: convolutions with learned weights (the DFL's is not one).

    Every node must have a name (Ultralytics' exporter names them ``/model.2/cv1/conv/Conv`` and so on).
    """
    inits = _initializers(model)
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("Conv", "ConvTranspose")
        and len(n.input) > 1
        and n.input[1] in inits
        and not is_dfl_conv(n, inits)
    ]


STEM_MAX_CHANNELS = 4  # a convolution reading at most this many channels is the image stem (ONNX and QAT side)


def stem_layers(model: onnx.ModelProto, max_channels: int = STEM_MAX_CHANNELS) -> list[str]:
    """Quantizable convolutions that read at most ``max_channels`` input channels (the image stem), not grouped.

    With K = 3 x 3 x 3 = 27 an INT8 GEMM does not pay: measured on YOLOv8n at 640 px, the stem's ``QLinearConv`` took
    6.9 ms against 4.4 ms for the float ``Conv``, and quantizing it also needs the image quantized and transposed to
    NHWC. It is also the most sensitive layer of the sensitivity ranking.
    """
    inits = _initializers(model)
    nodes = {n.name: n for n in model.graph.node}
    stems = []
    for layer in quantizable_layers(model):
        node = nodes[layer]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        w = inits[node.input[1]].dims
        if node.op_type == "Conv" and group == 1 and len(w) > 1 and w[1] <= max_channels:
            stems.append(layer)
    return stems


def with_activation(model: onnx.ModelProto, layers: Iterable[str]) -> list[str]:
    """``layers`` plus the SiLU (``Sigmoid`` and ``Mul`` on the convolution's output) that follows each one.

    A convolution kept float keeps its activation float too: quantizing the activation alone would put a
    Q/DQ round trip between the two and lose most of what keeping the layer float buys.
    """
    wanted = list(layers)
    consumers = consumers_of(model.graph)
    names = []
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        names.append(node.name)
        y = node.output[0]
        after = consumers.get(y, [])
        sig = [n for n in after if n.op_type == "Sigmoid"]
        mul = [n for n in after if n.op_type == "Mul" and sig and sig[0].output[0] in n.input]
        if len(after) == 2 and sig and mul:
            names += [sig[0].name, mul[0].name]
    return names


def decode_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes of the head's decode: those from which no learned convolution is reachable."""
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = set(quantizable_layers(model))
    upstream: set[str] = set()
    stack = [n for n in model.graph.node if n.name in layers]
    while stack:
        node = stack.pop()
        if node.name in upstream:
            continue
        upstream.add(node.name)
        stack += [producer[i] for i in node.input if i in producer]
    return [n.name for n in model.graph.node if n.name not in upstream]


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (quantization addresses nodes by name), in place."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)


def rewrite_dfl(model: onnx.ModelProto) -> bool:
    """Compute the DFL's softmax over the last axis and its expectation as a MatMul, in place.

    Ultralytics exports the DFL as ``Reshape(b,4,16,a) -> Transpose(0,2,1,3) -> Softmax(axis=1) -> Conv(arange)``.
    A softmax over a non-last axis makes ONNX Runtime transpose internally and was measured at ~15% of an INT8
    YOLOv8n at 640 px; ``Transpose(0,1,3,2) -> Softmax(axis=-1) -> MatMul(arange[16, 1])`` computes the same values
    (the following Reshape sees the same element order).

    Returns:
        True if the pattern was found and rewritten.
    """
    graph = model.graph
    inits = _initializers(model)
    consumers = consumers_of(graph)
    producer = {o: n for n in graph.node for o in n.output}
    changed = False
    for conv in list(graph.node):
        if not is_dfl_conv(conv, inits):
            continue
        softmax = producer.get(conv.input[0])
        transpose = producer.get(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
        if transpose is None or transpose.op_type != "Transpose":
            continue
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
        if (
            perm != [0, 2, 1, 3]
            or axis != 1
            or len(consumers.get(transpose.output[0], [])) != 1
            or len(consumers.get(softmax.output[0], [])) != 1
        ):
            continue
        w = numpy_helper.to_array(inits[conv.input[1]]).reshape(-1, 1).astype(np.float32)
        for a in transpose.attribute:
            if a.name == "perm":
                a.ints[:] = [0, 1, 3, 2]
        for a in softmax.attribute:
            if a.name == "axis":
                a.i = -1
        bins = f"{conv.name}/bins"
        graph.initializer.append(numpy_helper.from_array(w, bins))
        matmul = helper.make_node("MatMul", [softmax.output[0], bins], list(conv.output), name=f"{conv.name}/MatMul")
        stale = {transpose.output[0], softmax.output[0], *conv.output}
        kept = [v for v in graph.value_info if v.name not in stale]  # shape annotations of the old layout
        del graph.value_info[:]
        graph.value_info.extend(kept)
        index = list(graph.node).index(conv)
        graph.node.remove(conv)
        graph.node.insert(index, matmul)
        if not any(conv.input[1] in n.input for n in graph.node):
            graph.initializer.remove(inits[conv.input[1]])
        changed = True
    return changed


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Set (add or replace) ``metadata_props`` entries, in place."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value


def yoloslim_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The ``yoloslim`` metadata entry (JSON) of an exported model, or ``{}``."""
    raw = metadata(model).get(YOLOSLIM_KEY)
    return json.loads(raw) if raw else {}


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Node count by op type."""
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def conv_weight_names(model: onnx.ModelProto, layers: Iterable[str]) -> dict[str, str]:
    """Layer name -> its weight initializer name."""
    wanted = set(layers)
    return {n.name: n.input[1] for n in model.graph.node if n.name in wanted}
