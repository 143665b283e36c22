"""TensorRT adapter: answers ``yoloslim_export`` for ``fmt="engine"`` and ``yoloslim_open_runtime`` for ``.engine``.

The engine is built from ONNX with the TensorRT 10 Python API (``Builder`` -> ``OnnxParser`` ->
``IBuilderConfig`` -> ``build_serialized_network``):

- precision ``fp32``, ``fp16`` (``BuilderFlag.FP16``) or ``int8``: an ONNX with Q/DQ nodes (explicit quantization,
  e.g. from the quantization plugin; pass the ``.onnx`` as ``checkpoint``) builds with ``INT8`` + ``FP16`` flags
  and its own scales; otherwise INT8 is calibrated on dataset images with ``IInt8EntropyCalibrator2`` (deprecated
  by NVIDIA since 10.1, kept for models that were not quantized explicitly);
- ``dynamic=True``: one optimization profile for batch 1 .. ``max_batch`` (opt ``batch``) at the export size;
- a timing cache, read before and written after the build (``timing_cache``, default beside the engine);
- the builder's log kept next to the engine (``<out>.build.log``);
- ``nms=False``: YOLO26's NMS-free end-to-end head (output ``(batch, k, 6)``, its top-k included in the engine),
  passed to the intermediate ONNX export; ``nms=True`` (embedded NMS) is refused as for ONNX.

The engine is written in Ultralytics' layout (4-byte length, JSON metadata, serialized engine), so
``YOLO("model.engine")`` and :class:`yoloslim_deploy.Detector` both read it. Without the ``tensorrt`` package or a
GPU, the export fails with one :class:`yoloslim.errors.ExportError` line before any work.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim import ExportError, atomic_write_bytes, atomic_write_text, hookimpl
from yoloslim_deploy.metadata import YOLOSLIM_KEY, engine_bytes_with_header, onnx_metadata
from yoloslim_deploy.onnx_adapter import check_nms_option
from yoloslim_deploy.tempdirs import export_workdir
from yoloslim_deploy.tensorrt_runtime import require_tensorrt

LOGGER = logging.getLogger("yoloslim.deploy.tensorrt")

FORMATS = ("engine", "tensorrt")
_OPTIONS = (
    "imgsz",
    "precision",
    "half",
    "int8",
    "dynamic",
    "batch",
    "max_batch",
    "workspace",
    "timing_cache",
    "calib_images",
    "opset",
    "data",
    "nms",
    "max_det",
)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ExportError(f"unknown TensorRT export option(s) {unknown}; use {', '.join(_OPTIONS)}")
    precision = options.get("precision") or (
        "int8" if options.get("int8") else "fp16" if options.get("half") else "fp32"
    )
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"TensorRT export option precision={precision!r}; use fp32, fp16 or int8")
    batch = int(options.get("batch") or 1)
    max_batch = int(options.get("max_batch") or max(batch, 8))
    if batch < 1 or max_batch < batch:
        raise ExportError(f"TensorRT export: batch={batch}, max_batch={max_batch}; need 1 <= batch <= max_batch")
    check_nms_option(options.get("nms"), "TensorRT")
    return {**options, "precision": precision, "batch": batch, "max_batch": max_batch}


def has_qdq(onnx_path: str | Path) -> bool:
    """Whether an ONNX graph is explicitly quantized (carries QuantizeLinear nodes)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


def _calibrator(trt: Any, images: list[Path], imgsz: int, batch: int, cache: Path | None) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding letterboxed dataset images from GPU memory."""
    import torch

    from yoloslim import model_input

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = [images[i : i + batch] for i in range(0, len(images) - batch + 1, batch)]
            self.current: Any = None  # keeps the device buffer alive while TensorRT reads it

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self.batches:
                return None
            x = np.concatenate([model_input(imgsz, p) for p in self.batches.pop(0)])
            self.current = torch.from_numpy(x).cuda().contiguous()
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                atomic_write_bytes(cache, bytes(data))

    return Calibrator()


def build_engine(
    onnx_path: Path,
    *,
    imgsz: int,
    precision: str = "fp32",
    dynamic: bool = False,
    batch: int = 1,
    max_batch: int = 8,
    workspace: float | None = None,
    timing_cache: Path | None = None,
    calib_images: list[Path] | None = None,
    calib_cache: Path | None = None,
    log_path: Path | None = None,
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX file.

    Args:
        onnx_path: ONNX graph (Ultralytics export, or an explicitly quantized Q/DQ graph).
        imgsz: Square input size.
        precision: ``fp32``, ``fp16`` or ``int8``.
        dynamic: Build one optimization profile over batch 1..max_batch (the ONNX's batch axis must be dynamic).
        batch: Static batch, or the profile's optimum when dynamic.
        max_batch: Largest batch of the profile.
        workspace: Workspace memory pool limit in GiB (None: TensorRT's default).
        timing_cache: Timing-cache file, read if present and rewritten after the build.
        calib_images: Images for INT8 calibration when the graph has no Q/DQ nodes.
        calib_cache: Calibration cache file, reused if present.
        log_path: Where the builder's log is written.

    Returns:
        The serialized engine bytes (no metadata header).

    Raises:
        ExportError: If TensorRT or a GPU is missing, the ONNX does not parse, or the build fails.
    """
    trt = require_tensorrt(ExportError, "building a TensorRT engine")

    class BuildLog(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                LOGGER.error("TensorRT: %s", msg)

    log = BuildLog()
    try:
        builder = trt.Builder(log)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, log)
        if not parser.parse_from_file(str(onnx_path)):
            errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
            raise ExportError(
                f"TensorRT cannot parse '{onnx_path}': {errors[0] if errors else 'unknown error'}; "
                "export the ONNX again (a lower opset may help)"
            )
        config = builder.create_builder_config()
        if workspace:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace * (1 << 30)))
        cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)

        image = network.get_input(0)
        channels = image.shape[1] if image.shape[1] > 0 else 3
        if dynamic and image.shape[0] != -1:
            raise ExportError(
                f"'{onnx_path}' has a fixed batch of {image.shape[0]}; export the ONNX with "
                "dynamic=True for a dynamic-batch engine"
            )
        if -1 in tuple(image.shape):  # any dynamic axis needs a profile; a static engine pins it to batch, imgsz
            low, high = (1, max_batch) if dynamic else (batch, batch)
            profile = builder.create_optimization_profile()
            profile.set_shape(
                image.name,
                (low, channels, imgsz, imgsz),
                (batch, channels, imgsz, imgsz),
                (high, channels, imgsz, imgsz),
            )
            config.add_optimization_profile(profile)

        qdq = has_qdq(onnx_path)
        if precision in ("fp16", "int8") or qdq:
            config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized take the faster of FP16/FP32
        if precision == "int8" or qdq:
            config.set_flag(trt.BuilderFlag.INT8)
            if not qdq:
                if not calib_images or len(calib_images) < batch:
                    raise ExportError(
                        f"INT8 calibration of '{onnx_path}' needs at least {batch} images; pass "
                        "data=DATA.yaml with a train split, or export an explicitly quantized (Q/DQ) "
                        "ONNX from the quantization plugin"
                    )
                config.int8_calibrator = _calibrator(trt, calib_images, imgsz, batch, calib_cache)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise ExportError(
                f"TensorRT could not build an engine from '{onnx_path}'" + (f"; see {log_path}" if log_path else "")
            )
        if timing_cache is not None:
            atomic_write_bytes(timing_cache, bytes(cache.serialize()))
        return bytes(engine)
    finally:
        if log_path is not None:
            atomic_write_text(log_path, "\n".join(log.lines) + "\n")


@hookimpl
def yoloslim_export_formats() -> list[str]:
    """``engine`` and ``tensorrt`` when the ``tensorrt`` package imports here, else none."""
    import importlib

    try:
        importlib.import_module("tensorrt")
    except Exception:  # not installed, or an install that cannot load (no CUDA libraries)
        return []
    return list(FORMATS)


@hookimpl
def yoloslim_export(checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> Path | None:
    """Build a TensorRT engine at ``out`` from a checkpoint (exported to ONNX first) or from an ``.onnx`` file.

    Options: ``imgsz``; ``precision`` (fp32/fp16/int8; ``half``/``int8`` as aliases); ``dynamic``, ``batch``,
    ``max_batch``; ``workspace`` (GiB); ``timing_cache`` (path); ``calib_images`` (default 64); ``data`` (dataset
    YAML for calibration, default the run's); ``opset``, ``nms`` (False: YOLO26's NMS-free end-to-end output) and
    ``max_det`` (of the intermediate ONNX; an ``.onnx`` input keeps the layout it was exported with).

    The engine carries the ONNX's metadata: ``source`` is the checkpoint's resolved absolute path (for an ``.onnx``
    input that names none, the ``.onnx`` file's).
    """
    if fmt not in FORMATS:
        return None
    opts = _options({k: v for k, v in options.items() if v is not None})
    checkpoint, out = Path(checkpoint), Path(out)
    if checkpoint.suffix.lower() == ".onnx" and ("nms" in opts or "max_det" in opts):
        raise ExportError(
            f"TensorRT export options nms/max_det choose the head of a checkpoint's ONNX export; "
            f"'{checkpoint}' is already exported with its own layout: drop them, or pass the .pt"
        )
    require_tensorrt(ExportError, "building a TensorRT engine")  # one line, before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    imgsz = int(opts.get("imgsz") or getattr(ctx, "imgsz", 640))
    dynamic = bool(opts.get("dynamic"))
    with export_workdir(out.parent, ".engine-") as tmp:
        if checkpoint.suffix.lower() == ".onnx":
            onnx_path = checkpoint
        else:
            onnx_path = ctx.export(
                checkpoint,
                "onnx",
                Path(tmp) / f"{checkpoint.stem}.onnx",
                imgsz=imgsz,
                dynamic=dynamic or None,
                batch=None if dynamic else opts["batch"],
                opset=opts.get("opset"),
                nms=opts.get("nms"),
                max_det=opts.get("max_det"),
            )
        calib: list[Path] = []
        if opts["precision"] == "int8" and not has_qdq(onnx_path):
            data = opts.get("data") or getattr(ctx, "data", None)
            if data is None:
                raise ExportError(
                    "INT8 TensorRT export needs calibration images; pass data=DATA.yaml or export an "
                    "explicitly quantized (Q/DQ) ONNX"
                )
            from yoloslim import check_dataset, split_images

            dataset = check_dataset(data)
            calib = split_images(dataset, "train")[: int(opts.get("calib_images") or 64)]
        engine = build_engine(
            onnx_path,
            imgsz=imgsz,
            precision=opts["precision"],
            dynamic=dynamic,
            batch=opts["batch"],
            max_batch=opts["max_batch"],
            workspace=opts.get("workspace"),
            timing_cache=Path(opts.get("timing_cache") or out.with_name(out.stem + ".timing.cache")),
            calib_images=calib,
            calib_cache=out.with_name(out.stem + ".calib.cache") if calib else None,
            log_path=out.with_name(out.stem + ".build.log"),
        )
        import json

        metadata = onnx_metadata(onnx_path)
        extra = json.loads(metadata.get(YOLOSLIM_KEY) or "{}")
        extra.setdefault("source", str(Path(onnx_path).resolve()))  # an ONNX that does not name its checkpoint
        extra.update(
            precision="int8" if has_qdq(onnx_path) else opts["precision"],
            dynamic=dynamic,
            max_batch=opts["max_batch"] if dynamic else None,
        )
        metadata[YOLOSLIM_KEY] = json.dumps(extra, default=str)
        metadata["batch"] = opts["max_batch"] if dynamic else opts["batch"]
        atomic_write_bytes(out, engine_bytes_with_header(engine, metadata))
    LOGGER.info(
        "built %s (%s, %s batch, %s)",
        out,
        opts["precision"],
        "dynamic" if dynamic else opts["batch"],
        "NMS-free end-to-end output" if extra.get("end2end") else "NMS after the model",
    )
    return out


@hookimpl
def yoloslim_open_runtime(path: Path, threads: int, device: str) -> Any | None:
    """Open a ``.engine`` file as a TensorRT runtime (always on a GPU); other formats are not ours."""
    if Path(path).suffix.lower() != ".engine":
        return None
    from yoloslim_deploy.tensorrt_runtime import TensorRTRuntime

    return TensorRTRuntime(Path(path), device if device.startswith("cuda") else "cuda:0")
