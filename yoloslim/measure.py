"""The one measurement path: accuracy, size, params, GFLOPs and latency of the original and every artifact.

Every variant, ``.pt`` or ``.onnx`` (or another format through a runtime opener), goes through the same code:

- accuracy: Ultralytics' validator (``YOLO(path, task="detect").val``) with the same imgsz, split and square
  letterbox for all formats (``rect=False``: the validator turns rect batches off for a static ONNX itself, so the
  ``.pt`` must not use them either, or the two see differently padded images);
- params and GFLOPs: counted on the compute ops (2 x MACs of convolutions and matrix products, batch 1, imgsz);
- latency: one real image letterboxed to imgsz, batch 1, timed round-robin across all variants (ONNX Runtime
  sessions without thread spinning, so one session's idle threads do not slow the next) so machine noise
  hits them alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yoloslim.dataset_checks import check_class_names, check_images, check_imgsz, check_labels, check_threads
from yoloslim.errors import DataError, ModelError
from yoloslim.model_io import check_dataset, load_checkpoint, model_format, split_images

LOGGER = logging.getLogger("yoloslim.measure")

Runner = Callable[[np.ndarray], Any]
"""A loaded model: takes a float32 NCHW batch (RGB, 0..1) and returns the raw network output."""

RuntimeOpener = Callable[[Path, int], "Runner | None"]
"""``opener(path, threads)`` returns a :data:`Runner` for formats it knows, ``None`` for the others."""

BUILTIN_FORMATS = ("pt", "onnx")

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


@dataclasses.dataclass
class Measurement:
    """One row of a report: everything measured about one model file.

    Attributes:
        name: Display name (the file name unless given).
        path: The measured file.
        format: ``"pt"``, ``"onnx"`` or another suffix (see :func:`yoloslim.model_io.model_format`).
        imgsz: Square input size used for accuracy, GFLOPs and latency.
        params: Parameter count (``.pt``: the fused model's parameters; ``.onnx``: weights and biases of compute
            and normalisation ops), or None for a format that cannot be counted.
        gflops: 2 x multiply-accumulates of one batch-1 forward pass at imgsz, in billions, or None.
        size_mb: File size in bytes / 1e6.
        map50: mAP@0.5 on ``split``, or None when accuracy was not measured.
        map50_95: mAP@0.5:0.95 on ``split``, or None.
        split: The dataset split the mAPs come from, or None.
        latency_p50_ms: Median forward-pass latency, batch 1, in milliseconds, or None.
        latency_p90_ms: 90th-percentile latency in milliseconds, or None.
        throughput_fps: Images per second from the mean latency (batch 1), or None.
        threads: CPU threads the runtime was given.
        runs: Timed forward passes behind the latency figures (0 when latency was not measured).
        device: Where the latency was measured.
        agreement: Agreement with the reference model (:class:`yoloslim.agreement.Agreement` as a dict, plus
            ``reference`` and ``split``), or None when no reference was given. Not accuracy: see
            :mod:`yoloslim.agreement`.
        extra: Further columns, e.g. added by plugins through ``yoloslim_report_columns``.
    """

    name: str
    path: str
    format: str
    imgsz: int
    params: int | None
    gflops: float | None
    size_mb: float
    map50: float | None = None
    map50_95: float | None = None
    split: str | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    throughput_fps: float | None = None
    threads: int = 1
    runs: int = 0
    device: str = "cpu"
    agreement: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the measurement as a JSON-serialisable dictionary."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- counting


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
    macs = 0
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
            macs += node_macs
    if unknown:
        LOGGER.warning("%s: shapes of %d compute nodes could not be inferred; GFLOPs is a lower bound", path, unknown)
    return params, 2 * macs / 1e9


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


# --------------------------------------------------------------------------------------------- runtimes


def _open_torch(model: torch.nn.Module) -> Runner:
    """Wrap a (fused, float32, eval) torch model as a runner."""

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def _open_onnx(path: Path, threads: int) -> Runner:
    """Open an ONNX file in an ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle intra-op threads spin by default; with several sessions timed round-robin, one session's spinning
    # threads steal the cores of the next (measured: yolov8n 320 px, 2 threads: 12.3 ms alone, 27.4 ms between
    # runs of a yolov8s session; 14.0 / 14.2 ms without spinning). Every row is timed without spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"{path}: ONNX Runtime cannot open it ({type(e).__name__}: {e}); export it again") from e
    graph_input = session.get_inputs()[0]
    dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32

    def run(x: np.ndarray) -> Any:
        return session.run(None, {graph_input.name: x.astype(dtype, copy=False)})

    return run


def latency_image(imgsz: int, image: str | Path | None = None) -> np.ndarray:
    """Return the latency input: one image letterboxed to imgsz as a float32 (1, 3, imgsz, imgsz) RGB batch.

    Args:
        imgsz: Square input size.
        image: Image file; None gives a fixed synthetic 480x640 image (seeded noise), the same on every call.

    Returns:
        The batch, preprocessed as Ultralytics does (letterbox with grey padding, BGR->RGB, /255).

    Raises:
        DataError: If the image file cannot be read.
    """
    import cv2
    from ultralytics.data.augment import LetterBox

    if image is None:
        bgr = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        bgr = cv2.imread(str(image))
        if bgr is None:
            raise DataError(f"{image}: cannot read the image; replace or remove the file")
    boxed = LetterBox(new_shape=(imgsz, imgsz), auto=False, scaleup=True)(image=bgr)
    return np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def _open_runner(
    path: Path, fmt: str, threads: int, torch_model: torch.nn.Module | None, opener: RuntimeOpener | None
) -> Runner:
    """Open one model for timing: the plugin opener first, then the built-in torch / ONNX Runtime runners."""
    runner = opener(path, threads) if opener is not None else None
    if runner is not None:
        return runner
    if fmt == "pt" and torch_model is not None:
        return _open_torch(torch_model)
    if fmt == "onnx":
        return _open_onnx(path, threads)
    raise ModelError(f"{path}: no runtime for format '{fmt}'; install the plugin that runs it")


def _time_interleaved(runners: Sequence[Runner], x: np.ndarray, warmup: int, runs: int) -> list[list[float]]:
    """Time ``runs`` calls of every runner, round-robin (starting one later each round); seconds per call."""
    for _ in range(warmup):
        for run in runners:
            run(x)
    times: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    for r in range(runs):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            start = time.perf_counter()
            runners[i](x)
            times[i].append(time.perf_counter() - start)
    return times


def time_onnx(paths: Sequence[str | Path], x: np.ndarray, *, threads: int = 2, warmup: int = 1,
              runs: int = 20) -> list[float]:
    """Median milliseconds per call of each ONNX file on the input ``x``, timed as :func:`measure` times them.

    For quick comparisons inside a plugin (e.g. the latency cost of a variant): the same ONNX Runtime session
    settings and the same round-robin loop as the report's latency, without the counts and the validation.
    """
    runners = [_open_onnx(Path(p), threads) for p in paths]
    return [float(np.median(t)) * 1000 for t in _time_interleaved(runners, x, warmup, runs)]


# --------------------------------------------------------------------------------------------- measure


def validate(
    path: str | Path, data: str | Path, *, imgsz: int, split: str = "val", batch: int = 16
) -> tuple[float, float]:
    """Return ``(mAP50, mAP50-95)`` of one model file from Ultralytics' validator, with measurement settings.

    Settings are forced identical for every format: CPU, square letterbox (``rect=False``; the validator switches
    rect batches off for static exported models and on by default for ``.pt``), the given imgsz and split, and the
    default thresholds. A static ONNX is validated at its exported batch (1) whatever ``batch`` says; with square
    letterbox every image is preprocessed alone, so the batch does not change the result.

    Args:
        path: Model file (any format Ultralytics' AutoBackend loads).
        data: Dataset YAML.
        imgsz: Square input size.
        split: Dataset split.
        batch: Validation batch size.

    Returns:
        ``(map50, map50_95)``.
    """
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="yoloslim-val-") as tmp:
        metrics = YOLO(str(path), task="detect").val(
            data=str(data),
            imgsz=imgsz,
            batch=batch,
            split=split,
            device="cpu",
            rect=False,
            single_cls=False,
            augment=False,
            conf=0.001,
            iou=0.7,
            max_det=300,
            plots=False,
            verbose=False,
            save_json=False,
            workers=0,
            project=tmp,
            name="val",
            exist_ok=True,
        )
    return float(metrics.box.map50), float(metrics.box.map)


def measure(
    paths: Sequence[str | Path],
    data: str | Path | None,
    *,
    imgsz: int = 320,
    split: str = "val",
    batch: int = 16,
    threads: int = 2,
    warmup: int = 10,
    runs: int = 50,
    accuracy: bool = True,
    latency: bool = True,
    runtime_opener: RuntimeOpener | None = None,
    names: Sequence[str] | None = None,
    reference: str | Path | None = None,
    agreement_images: int | None = None,
) -> list[Measurement]:
    """Measure model files the same way: size, params, GFLOPs, mAP and interleaved batch-1 latency.

    Args:
        paths: Model files (``.pt``, ``.onnx``, or any format ``runtime_opener`` opens).
        data: Dataset YAML; needed for accuracy. Latency uses its split's first image, or a fixed synthetic
            image when None.
        imgsz: Square input size for everything.
        split: Dataset split for accuracy and the latency image.
        batch: Validation batch size (latency is always batch 1).
        threads: CPU threads given to each runtime.
        warmup: Untimed forward passes per model before timing.
        runs: Timed forward passes per model.
        accuracy: Measure mAP with Ultralytics' validator.
        latency: Measure latency.
        runtime_opener: ``opener(path, threads) -> runner | None``, tried first for every file; None from it
            (or no opener) falls back to the built-in torch / ONNX Runtime runners.
        names: Display names, one per path; defaults to the file names.
        reference: The FP32 original (any format); when given, every row gets its agreement with it on the
            split's images (:mod:`yoloslim.agreement`), the measure of quality on images without labels.
        agreement_images: Most images of the split scored for agreement (spread evenly), None for all.

    Returns:
        One :class:`Measurement` per path, in order.

    Everything is checked before the first model is counted: with accuracy or a reference, every label file
    (:func:`yoloslim.dataset_checks.check_labels`, accuracy only) and image
    (:func:`yoloslim.dataset_checks.check_images`) of the split, and every model's classes against the
    dataset's (``.pt``: ``model.names``; ``.onnx``: the ``names`` Ultralytics writes into its metadata; other
    formats: not checked); for every ``.pt``/``.onnx``, its task (``detect``) and that imgsz is a multiple of its
    stride.

    Raises:
        ModelError: If a file is missing, unloadable, not a detection model (an ONNX file whose metadata names
            another task included), has a fixed input other than batch 1 at imgsz, or has a format nothing can run.
        DataError: If the dataset is invalid (YAML, labels, images), a model's classes are not the dataset's,
            imgsz is not a positive multiple of a model's stride, threads < 1, or accuracy is asked for without a
            dataset.
    """
    paths = [Path(p) for p in paths]
    check_threads(threads)
    if names is not None and len(names) != len(paths):
        raise ValueError(f"measure: got {len(names)} names for {len(paths)} paths")
    if accuracy and data is None:
        raise DataError("measure: accuracy needs a dataset YAML; pass data=... or accuracy=False")
    if reference is not None and data is None:
        raise DataError("measure: agreement needs images; pass data=... (a dataset YAML, labels not needed)")
    if reference is not None and not Path(reference).is_file():
        raise ModelError(f"{reference}: reference model not found; pass the FP32 original's .pt or .onnx file")
    for path in paths:
        if not path.is_file():
            raise ModelError(f"{path}: model file not found; pass the path to an existing .pt or .onnx file")
        if model_format(path) not in BUILTIN_FORMATS and runtime_opener is None:
            raise ModelError(
                f"{path}: no runtime for format '{model_format(path)}'; measure .pt or .onnx files, or install "
                f"the plugin that runs it"
            )
    dataset = check_dataset(data) if data is not None else None
    if dataset is not None and not dataset.get(split):
        raise DataError(f"{data}: has no '{split}:' split to measure on; add it to the YAML or pass split='val'")
    # Images and labels the validator (or the agreement) reads are checked before any model is counted; a model
    # measured on the split is then held to the dataset's classes.
    reads_split = dataset is not None and (accuracy or reference is not None)
    if reads_split:
        if accuracy:
            check_labels(dataset, split, data)
        check_images(dataset, split, data)

    # Load and count first: a bad file fails before any long validation runs.
    results: list[Measurement] = []
    torch_models: dict[int, torch.nn.Module] = {}
    for i, path in enumerate(paths):
        fmt = model_format(path)
        params: int | None = None
        gflops: float | None = None
        if fmt == "pt":
            model, _ = load_checkpoint(path)
            check_imgsz(imgsz, model_stride(model))
            if reads_split:
                check_class_names(getattr(model, "names", None), dataset["names"], path, data)
            model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
            torch_models[i] = model.eval()
            params, gflops = torch_counts(torch_models[i], imgsz)
        elif fmt == "onnx":
            metadata = onnx_metadata(path)
            check_onnx_task(path, metadata)
            stride = _literal(metadata.get("stride"))
            check_imgsz(imgsz, stride if isinstance(stride, int) and stride > 0 else 32)
            if reads_split:
                check_class_names(_literal(metadata.get("names")), dataset["names"], path, data)
            params, gflops = onnx_counts(path, imgsz)
        else:
            check_imgsz(imgsz, 1)
        results.append(
            Measurement(
                name=names[i] if names is not None else path.name,
                path=str(path),
                format=fmt,
                imgsz=imgsz,
                params=params,
                gflops=gflops,
                size_mb=path.stat().st_size / 1e6,
                threads=threads,
            )
        )
        LOGGER.info("%s: %s params, %s GFLOPs", path, params, None if gflops is None else f"{gflops:.3f}")

    if accuracy:
        for m in results:
            LOGGER.info("%s: validating on '%s' at imgsz=%d", m.path, split, imgsz)
            m.map50, m.map50_95 = validate(m.path, data, imgsz=imgsz, split=split, batch=batch)
            m.split = split
            LOGGER.info("%s: mAP50 %.4f, mAP50-95 %.4f", m.path, m.map50, m.map50_95)

    if reference is not None:
        _add_agreement(results, torch_models, Path(reference), dataset, split, imgsz, threads, runtime_opener,
                       agreement_images)

    if latency and runs > 0:
        image = None
        if dataset is not None:
            images = split_images(dataset, split)
            if not images:
                raise DataError(f"{data}: no images in the '{split}' split for the latency input; pass another split")
            image = images[0]
        x = latency_image(imgsz, image)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            runners = [
                _open_runner(path, m.format, threads, torch_models.get(i), runtime_opener)
                for i, (path, m) in enumerate(zip(paths, results))
            ]
            for m, runner in zip(results, runners):
                m.device = str(getattr(runner, "device", "cpu"))
            LOGGER.info("timing %d models: %d warmup + %d runs each, interleaved", len(runners), warmup, runs)
            times = _time_interleaved(runners, x, warmup, runs)
        finally:
            torch.set_num_threads(previous_threads)
        for m, seconds in zip(results, times):
            ms = np.asarray(seconds) * 1000.0
            m.latency_p50_ms = float(np.percentile(ms, 50))
            m.latency_p90_ms = float(np.percentile(ms, 90))
            m.throughput_fps = float(1000.0 / ms.mean())
            m.runs = runs
            LOGGER.info("%s: p50 %.2f ms, p90 %.2f ms", m.path, m.latency_p50_ms, m.latency_p90_ms)
    return results


def _literal(value: str | None) -> Any:
    """A metadata value Ultralytics' exporter wrote with ``str()`` (``"32"``, ``"{0: 'person'}"``), or None."""
    import ast

    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (Ultralytics writes ``task``, ``names``, ``stride``, ...).

    Raises:
        ModelError: If the file cannot be read as ONNX.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e}); export it again") from e
    return {p.key: p.value for p in model.metadata_props}


def check_onnx_task(path: str | Path, metadata: dict[str, str]) -> None:
    """Refuse an ONNX file whose Ultralytics metadata names a task other than ``detect`` (OBB, segment, ...).

    A file without a ``task`` entry (not exported by Ultralytics) is not refused here.

    Raises:
        ModelError: Naming the file and its task.
    """
    task = metadata.get("task")
    if task is not None and task != "detect":
        raise ModelError(
            f"{path}: holds a '{task}' model (ONNX metadata), yoloslim measures detection models only; "
            f"pass a model exported from a checkpoint trained with task=detect"
        )


def model_stride(model: torch.nn.Module) -> int:
    """The largest stride of an Ultralytics model (32 when it does not say)."""
    stride = getattr(model, "stride", None)
    return int(stride.max()) if isinstance(stride, torch.Tensor) and stride.numel() else 32


def onnx_class_count(model: Any) -> int | None:
    """Number of classes of a loaded ONNX model, from the class names Ultralytics' exporter stores in its metadata."""
    names = _literal(next((p.value for p in model.metadata_props if p.key == "names"), None))
    return None if names is None else len(names)


def model_nc(path: Path, torch_model: torch.nn.Module | None = None) -> int | None:
    """Number of classes of a model file: the torch model's names, or an ONNX file's Ultralytics metadata."""
    if torch_model is not None and getattr(torch_model, "names", None) is not None:
        return len(torch_model.names)
    if path.suffix.lower() == ".onnx":
        import onnx

        return onnx_class_count(onnx.load(str(path), load_external_data=False))
    return None


def _add_agreement(results: list[Measurement], torch_models: dict[int, torch.nn.Module], reference: Path,
                   dataset: dict[str, Any] | None, split: str, imgsz: int, threads: int,
                   opener: RuntimeOpener | None, count: int | None) -> None:
    """Fill ``agreement`` of every row: each model against ``reference`` on the split's images."""
    from yoloslim.agreement import measure_agreement

    images = split_images(dataset or {}, split)
    if not images:
        raise DataError(f"no images in the '{split}' split to measure agreement on; pass another split")
    if count is not None and count < len(images):
        images = [images[int(i * len(images) / count)] for i in range(count)]
    # The reference is usually one of the rows (the original): its loaded model and runner serve both roles.
    row = next((i for i, m in enumerate(results) if Path(m.path).resolve() == reference.resolve()), None)
    ref_model = torch_models.get(row) if row is not None else None
    if row is None and model_format(reference) == "pt":
        ref_model = load_checkpoint(reference)[0]
        ref_model = (ref_model.fuse(verbose=False) if hasattr(ref_model, "fuse") else ref_model).eval()
    nc = model_nc(reference, ref_model)
    if nc is None:
        raise ModelError(f"{reference}: cannot tell its classes (no names in its metadata); pass the .pt or the "
                         "ONNX file Ultralytics exported")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runners = [_open_runner(Path(m.path), m.format, threads, torch_models.get(i), opener)
                   for i, m in enumerate(results)]
        ref_runner = runners[row] if row is not None else _open_runner(reference, model_format(reference), threads,
                                                                       ref_model, opener)
        LOGGER.info("agreement with %s on %d '%s' images", reference, len(images), split)
        batches = (latency_image(imgsz, p) for p in images)
        scores = measure_agreement(ref_runner, runners, list(batches), nc)
    finally:
        torch.set_num_threads(previous_threads)
    for m, a in zip(results, scores):
        m.agreement = {**a.to_dict(), "reference": str(reference), "split": split}
        LOGGER.info("%s: agreement mAP50-95 %.4f, F1@0.5 %.4f", m.path, a.map50_95, a.f1)


# --------------------------------------------------------------------------------------------- output


def _cell(value: float | int | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(measurements: Sequence[Measurement]) -> str:
    """Return the measurements as a markdown table, one row per model.

    Args:
        measurements: Rows from :func:`measure`.

    Returns:
        The table text (header, separator, rows), ``-`` where a value was not measured. Agreement columns appear
        when a row has agreement; the mAP columns are left out when no row has accuracy (unlabelled images).
    """
    agree = any(m.agreement for m in measurements)
    accuracy = any(m.map50_95 is not None for m in measurements) or not agree
    header = ["name", "format", "params (M)", "GFLOPs", "size MB"]
    header += ["mAP50", "mAP50-95"] if accuracy else []
    header += ["agreement mAP50-95", "agreement F1@0.5"] if agree else []
    header += ["p50 ms", "p90 ms", "FPS", "threads"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for m in measurements:
        cells = [m.name, m.format, _cell(None if m.params is None else m.params / 1e6, 3), _cell(m.gflops, 2),
                 _cell(m.size_mb, 2)]
        cells += [_cell(m.map50, 4), _cell(m.map50_95, 4)] if accuracy else []
        if agree:
            a = m.agreement or {}
            cells += [_cell(a.get("map50_95"), 4), _cell(a.get("f1"), 4)]
        cells += [_cell(m.latency_p50_ms, 2), _cell(m.latency_p90_ms, 2), _cell(m.throughput_fps, 1), str(m.threads)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(measurements: Sequence[Measurement], path: str | Path) -> Path:
    """Write the measurements as a JSON list, atomically (temporary file, then rename).

    Args:
        measurements: Rows from :func:`measure`.
        path: Destination file; its folder is created.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump([m.to_dict() for m in measurements], f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
