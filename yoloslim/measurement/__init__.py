"""The one measurement path: accuracy, size, params, GFLOPs and latency of the original and every artifact.

Every variant, ``.pt`` or ``.onnx`` (or another format through a runtime opener), goes through the same code:

- accuracy: Ultralytics' validator (``YOLO(path, task="detect").val``) with the same imgsz, split and square
  letterbox for all formats (``rect=False``: the validator turns rect batches off for a static ONNX itself, so the
  ``.pt`` must not use them either, or the two see differently padded images);
- params and GFLOPs: counted on the compute ops (2 x MACs of convolutions and matrix products, batch 1, imgsz);
- latency: one real image letterboxed to imgsz, batch 1, timed round-robin across all variants (ONNX Runtime
  sessions without thread spinning, so one session's idle threads do not slow the next) so machine noise
  hits them alike.

The package is named ``measurement``, not ``measure``: ``yoloslim.measure`` is the public function, and importing a
submodule of that name would replace it on the package. Its modules:

- :mod:`~yoloslim.measurement.harness`: :class:`Measurement` (one row) and :func:`measure`; the ``--imgsz``,
  ``--threads`` and ``--runs`` checks;
- :mod:`~yoloslim.measurement.counting`: params and GFLOPs of a torch model or an ONNX graph;
- :mod:`~yoloslim.measurement.runtimes`: a model file opened as one callable (torch, ONNX Runtime, a plugin's);
- :mod:`~yoloslim.measurement.latency`: interleaved timing;
- :mod:`~yoloslim.measurement.inputs`: :func:`model_input`, the preprocessing of one image;
- :mod:`~yoloslim.measurement.accuracy`: mAP through Ultralytics' validator, agreement rows;
- :mod:`~yoloslim.measurement.model_info`: ONNX metadata and task, stride, class count;
- :mod:`~yoloslim.measurement.table`: the markdown table and the JSON list of rows.
"""

from __future__ import annotations

from yoloslim.measurement.accuracy import validate
from yoloslim.measurement.counting import onnx_counts, torch_counts
from yoloslim.measurement.harness import Measurement, check_imgsz, check_runs, check_threads, measure
from yoloslim.measurement.inputs import model_input
from yoloslim.measurement.latency import time_onnx
from yoloslim.measurement.model_info import check_onnx_task, model_nc, model_stride, onnx_class_count, onnx_metadata
from yoloslim.measurement.runtimes import BUILTIN_FORMATS, Runtime, RuntimeOpener, open_runtime
from yoloslim.measurement.table import format_table, text_cell, write_json

__all__ = [
    "BUILTIN_FORMATS",
    "Measurement",
    "Runtime",
    "RuntimeOpener",
    "check_imgsz",
    "check_onnx_task",
    "check_runs",
    "check_threads",
    "format_table",
    "measure",
    "model_input",
    "model_nc",
    "model_stride",
    "onnx_class_count",
    "onnx_counts",
    "onnx_metadata",
    "open_runtime",
    "text_cell",
    "time_onnx",
    "torch_counts",
    "validate",
    "write_json",
]
