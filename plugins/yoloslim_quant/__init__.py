"""Quantization for yoloslim: INT8 post-training quantization, sensitivity-guided mixed precision and QAT of
Ultralytics YOLO detectors, exported as QDQ ONNX for ONNX Runtime (CPU) and TensorRT.

The recipe stage ``quantize`` and the command ``yoloslim quantize`` come from :mod:`yoloslim_quant.plugin`. The
functions below work on files directly::

    from yoloslim_quant import QuantConfig, calibration_images, load_batch, quantize_graph, check_tensorrt_qdq

    calib = load_batch(calibration_images("data.yaml", "train", 64), 640)
    quantize_graph("model_fp32.onnx", "model_int8.onnx", calib, QuantConfig(target="tensorrt"))
    assert not check_tensorrt_qdq("model_int8.onnx")
"""

from yoloslim_quant.calibration import ImageReader, calibration_images, load_batch
from yoloslim_quant.graph import decode_nodes, quantizable_layers, rewrite_dfl
from yoloslim_quant.ptq import QuantConfig, quantize_graph, weight_only
from yoloslim_quant.sensitivity import layer_sensitivity, search_mixed
from yoloslim_quant.trt_check import check_tensorrt_qdq

__all__ = [
    "ImageReader",
    "QuantConfig",
    "calibration_images",
    "check_tensorrt_qdq",
    "decode_nodes",
    "layer_sensitivity",
    "load_batch",
    "quantizable_layers",
    "quantize_graph",
    "rewrite_dfl",
    "search_mixed",
    "weight_only",
]
