"""Post-training quantization of an exported FP32 YOLO ONNX graph with ONNX Runtime's static quantizer.

Two targets, one QDQ format (``QuantizeLinear``/``DequantizeLinear`` around float ops, which runtimes fuse):

- ``cpu``: the layout measured fastest for ONNX Runtime on x86 with VNNI: unsigned 8-bit activations, signed 8-bit
  per-channel weights (fused into ``QLinearConv``), and every op of the network quantized, not only the
  convolutions (SiLU's Sigmoid/Mul, Concat, Add, MaxPool, Resize, Split then run on uint8 and no float round trip
  is left between two convolutions). Plus the DFL rewrite of :func:`yoloslim_quant.graph.rewrite_dfl`, and the
  image stem kept float (:func:`yoloslim_quant.graph.stem_layers`).
- ``tensorrt``: what TensorRT's explicit quantization accepts: signed 8-bit, symmetric (zero point 0) activations
  and weights, weight scales per output channel (axis 0), Q/DQ on the inputs of convolutions and residual
  additions only (TensorRT fuses Conv + bias + SiLU + residual Add itself), float bias. Every file is checked with
  :func:`yoloslim_quant.trt_check.check_tensorrt_qdq`.

The head's decode always stays float (see :mod:`yoloslim_quant.graph`). Layers named in ``keep`` stay float
(mixed precision) or get 16-bit activations (``keep_precision="w8a16"``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yoloslim import ExportError

from .calibration import ImageReader
from .graph import (
    YOLOSLIM_KEY,
    decode_nodes,
    metadata,
    name_nodes,
    quantizable_layers,
    rewrite_dfl,
    set_metadata,
    stem_layers,
    with_activation,
    yoloslim_metadata,
)

LOGGER = logging.getLogger("yoloslim.quant.ptq")

TARGETS = ("cpu", "tensorrt")
METHODS = ("minmax", "avgminmax", "entropy", "percentile")
PRECISIONS = ("int8", "w8a16", "weight_only", "fp16")
# Ops TensorRT wants Q/DQ on (inputs only); everything else is fused or runs in float between them.
_TRT_OPS = ["Conv", "ConvTranspose", "Add", "MatMul", "Gemm"]


@dataclass
class QuantConfig:
    """How to quantize one graph.

    Attributes:
        target: ``cpu`` (fastest ONNX Runtime layout) or ``tensorrt`` (symmetric, TensorRT placement).
        method: Calibration: ``minmax`` (global extremes), ``avgminmax`` (the mean over images of per-image
            extremes: outliers of one image do not set the range), ``entropy`` or ``percentile``.
        precision: ``int8`` (weights and activations), ``w8a16`` (8-bit weights, 16-bit activations; cpu only).
        keep: Layers (node names of :func:`quantizable_layers`) kept out of INT8.
        keep_precision: ``float`` (kept layers run in float) or ``w8a16`` (16-bit activations around them).
        graph_opts: Apply the graph-level speed rewrites (cpu target).
        percentile: Percentile of ``percentile`` calibration.
        ranges: Activation ranges ``tensor name -> (min, max)`` that replace calibrated ones (from QAT).
    """

    target: str = "cpu"
    method: str = "avgminmax"
    precision: str = "int8"
    keep: Sequence[str] = ()
    keep_precision: str = "float"
    graph_opts: bool = True
    percentile: float = 99.999
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ExportError for an unknown or contradictory setting."""
        if self.target not in TARGETS:
            raise ExportError(f"quantization target '{self.target}' is unknown; use one of {list(TARGETS)}")
        if self.method not in METHODS:
            raise ExportError(f"calibration method '{self.method}' is unknown; use one of {list(METHODS)}")
        if self.precision not in ("int8", "w8a16"):
            raise ExportError(f"precision '{self.precision}' is not static quantization; use int8 or w8a16")
        if self.target == "tensorrt" and "w8a16" in (self.precision, self.keep_precision if self.keep else ""):
            raise ExportError(
                "TensorRT has no 16-bit integer activations; use precision int8 and keep_precision "
                "float with target tensorrt"
            )


def policy_float_layers(model: onnx.ModelProto, cfg: QuantConfig) -> list[str]:
    """Layers the target keeps float whatever ``keep`` says: the image stem on ``cpu`` with ``graph_opts``."""
    return stem_layers(model) if cfg.target == "cpu" and cfg.graph_opts else []


def _settings(cfg: QuantConfig, model: onnx.ModelProto, keep: list[str]) -> dict[str, Any]:
    """Arguments of ``quantize_static`` for ``cfg``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    method = {
        "minmax": CalibrationMethod.MinMax,
        "avgminmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.method]
    extra: dict[str, Any] = {"WeightSymmetric": True}
    if cfg.method == "avgminmax":  # each tensor's range: the mean over images of its per-image min and max
        extra["CalibMovingAverage"] = True
    if cfg.method == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    exclude = decode_nodes(model)
    overrides: dict[str, list[dict[str, Any]]] = {}
    for name, (lo, hi) in cfg.ranges.items():
        overrides[name] = [{"rmin": np.array(lo, dtype=np.float32), "rmax": np.array(hi, dtype=np.float32)}]
        if cfg.target == "tensorrt":  # QAT ranges are asymmetric; TensorRT's scales are symmetric around 0
            overrides[name][0]["symmetric"] = True
    if cfg.target == "tensorrt":
        extra.update(ActivationSymmetric=True, QuantizeBias=False, OpTypesToExcludeOutputQuantization=list(_TRT_OPS))
        activation = QuantType.QInt8
        op_types = list(_TRT_OPS)
        exclude += list(keep)
    else:
        activation = QuantType.QUInt16 if cfg.precision == "w8a16" else QuantType.QUInt8
        op_types = None  # every op ONNX Runtime can quantize
        if keep and cfg.keep_precision == "w8a16":
            nodes = {n.name: n for n in model.graph.node}
            for layer in keep:
                for tensor in (nodes[layer].input[0], nodes[layer].output[0]):
                    overrides.setdefault(tensor, [{}])[0]["quant_type"] = QuantType.QUInt16
        else:
            exclude += with_activation(model, keep)
        exclude += policy_float_layers(model, cfg)
        if activation == QuantType.QUInt16 or (keep and cfg.keep_precision == "w8a16"):  # 16-bit Q/DQ
            extra["UseQDQContribOps"] = True
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    return {
        "quant_format": QuantFormat.QDQ,
        "activation_type": activation,
        "weight_type": QuantType.QInt8,
        "per_channel": True,
        "reduce_range": False,
        "calibrate_method": method,
        "op_types_to_quantize": op_types,
        "nodes_to_exclude": sorted(set(exclude)),
        "extra_options": extra,
    }


def prepare(model: onnx.ModelProto, cfg: QuantConfig) -> onnx.ModelProto:
    """The float graph that gets quantized: nodes named, the graph-level rewrites of the cpu target applied."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    name_nodes(model)
    if cfg.target == "cpu" and cfg.graph_opts:
        rewrite_dfl(model)
    return model


def quantize_graph(
    fp32: str | Path | onnx.ModelProto,
    out: str | Path,
    calib: np.ndarray | None,
    cfg: QuantConfig,
    cache: str | Path | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Quantize an FP32 detection ONNX file statically and write the QDQ graph to ``out`` (atomically).

    Args:
        fp32: FP32 ONNX (a file from the ONNX export adapter, with Ultralytics' metadata).
        out: Destination ``.onnx``.
        calib: Calibration images, float32 (N, 3, H, W) at the graph's input size; None only with an existing
            ``cache``.
        cfg: The quantization settings.
        cache: Calibration cache (JSON of tensor ranges): written on the first call, read on later ones, so
            variants of one graph (mixed precision, sensitivity) calibrate once.
        info: Extra entries for the ``yoloslim`` metadata.

    Returns:
        ``out``.
    """
    from onnxruntime.quantization import quantize_static

    cfg.check()
    source = fp32 if isinstance(fp32, onnx.ModelProto) else onnx.load(str(fp32))
    model = prepare(source, cfg)
    unknown = sorted(set(cfg.keep) - set(quantizable_layers(model)))
    if unknown:
        raise ExportError(f"layers {unknown[:3]} to keep in float are not quantizable layers of the graph")
    if calib is None and (cache is None or not Path(cache).is_file()):
        raise ExportError("static quantization needs calibration images (or an existing calibration cache)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = _settings(cfg, model, list(cfg.keep))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=out.parent) as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(src))
        staged = Path(tmp) / "int8.onnx"
        reader = ImageReader(calib, input_name) if calib is not None else None
        quantize_static(str(src), str(staged), reader, calibration_cache_path=str(cache) if cache else None, **settings)
        result = onnx.load(str(staged))
        _finish(result, source, cfg, info, settings)
        onnx.save(result, str(Path(tmp) / "final.onnx"))
        os.replace(Path(tmp) / "final.onnx", out)
    LOGGER.info(
        "quantized %s (%s target, %s, %s calibration, %d layers kept out of INT8)",
        out.name,
        cfg.target,
        cfg.precision,
        cfg.method,
        len(cfg.keep),
    )
    if cfg.target == "tensorrt":
        from .trt_check import check_tensorrt_qdq

        problems = check_tensorrt_qdq(out)
        if problems:
            out.unlink()
            raise ExportError(
                f"{out.name}: not a valid TensorRT explicit-quantization graph: " + "; ".join(problems[:5])
            )
    return out


def _finish(
    model: onnx.ModelProto,
    source: onnx.ModelProto,
    cfg: QuantConfig,
    info: dict[str, Any] | None,
    settings: dict[str, Any],
) -> None:
    """Carry Ultralytics' metadata over and record how the graph was quantized (in place)."""
    meta = metadata(source)
    entry = {
        **yoloslim_metadata(source),
        "precision": cfg.precision if not cfg.keep else "mixed",
        "quantization": {
            "target": cfg.target,
            "method": cfg.method,
            "format": "QDQ",
            "activations": "uint16"
            if cfg.precision == "w8a16"
            else ("int8 symmetric" if cfg.target == "tensorrt" else "uint8"),
            "weights": "int8 symmetric per-channel (axis 0)",
            "float_layers": list(cfg.keep),
            "keep_precision": cfg.keep_precision if cfg.keep else None,
            "decode": "float",
            "graph_opts": cfg.graph_opts and cfg.target == "cpu",
            "float_stem": policy_float_layers(source, cfg),
            "qat_ranges": len(cfg.ranges),
            **(info or {}),
        },
    }
    entry.pop("parity", None)  # the FP32 export's parity no longer describes this graph
    meta[YOLOSLIM_KEY] = json.dumps(entry, default=str)
    set_metadata(model, meta)


def weight_only(fp32: str | Path | onnx.ModelProto, out: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Store every quantizable layer's weights as INT8 (symmetric, per output channel) behind a DequantizeLinear.

    The file is ~4x smaller; activations and compute stay float (no speed-up on CPU).
    """
    source = fp32 if isinstance(fp32, onnx.ModelProto) else onnx.load(str(fp32))
    model = onnx.ModelProto.FromString(source.SerializeToString())
    name_nodes(model)
    inits = {t.name: t for t in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    dq_nodes = []
    for layer in quantizable_layers(model):
        node = nodes[layer]
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        scale = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
        base = node.input[1]
        model.graph.initializer.remove(inits[base])
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{base}_quantized"),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
                numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{base}_zero_point"),
            ]
        )
        dq_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
                [base],
                name=f"{base}_DQ",
                axis=0,
            )
        )
    for i, dq in enumerate(dq_nodes):
        model.graph.node.insert(i, dq)
    entry = {
        **yoloslim_metadata(source),
        "precision": "w8a32",
        "quantization": {
            "format": "weight-only",
            "weights": "int8 symmetric per-channel (axis 0)",
            "layers": len(dq_nodes),
            **(info or {}),
        },
    }
    entry.pop("parity", None)
    set_metadata(model, {YOLOSLIM_KEY: json.dumps(entry, default=str)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=out.parent) as tmp:
        onnx.checker.check_model(model)
        onnx.save(model, str(Path(tmp) / "w8.onnx"))
        os.replace(Path(tmp) / "w8.onnx", out)
    return out


def run_onnx(path: str | Path | bytes, x: np.ndarray, threads: int = 2, optimize: bool = True) -> np.ndarray:
    """Raw first output of an ONNX graph on ``x``, one image per call (static batch 1).

    ``optimize=False`` keeps ONNX Runtime to its basic graph optimizations: sessions start ~2x faster (used when
    many one-off graphs are scored).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    return np.concatenate([session.run(None, {name: x[i : i + 1].astype(dtype)})[0] for i in range(len(x))]).astype(
        np.float32
    )
