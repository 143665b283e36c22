"""The measurement harness: one path for the original and every artifact, and the options it takes.

:func:`measure` checks everything first (options, dataset, labels, images, every model's task, stride and classes),
then counts params and GFLOPs (:mod:`~yoloslim.measurement.counting`), validates mAP
(:mod:`~yoloslim.measurement.accuracy`) or scores agreement with the FP32 original, and times latency
(:mod:`~yoloslim.measurement.latency`) through the same runtimes (:mod:`~yoloslim.measurement.runtimes`) for every
format. Each model becomes one :class:`Measurement` row. :func:`check_imgsz`, :func:`check_threads` and
:func:`check_runs` check the harness's options (``--imgsz``, ``--threads``, ``--runs``) for every command.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from yoloslim.checkpoint import load_checkpoint, model_format
from yoloslim.dataset import check_class_names, check_dataset, check_images, check_labels, split_images
from yoloslim.errors import DataError, ModelError
from yoloslim.measurement.accuracy import add_agreement, validate
from yoloslim.measurement.counting import onnx_counts, torch_counts
from yoloslim.measurement.inputs import model_input
from yoloslim.measurement.latency import latency_figures, time_interleaved
from yoloslim.measurement.model_info import check_onnx_task, metadata_literal, model_stride, onnx_metadata
from yoloslim.measurement.runtimes import BUILTIN_FORMATS, RuntimeOpener, open_runtime, torch_threads

LOGGER = logging.getLogger("yoloslim.measurement")


@dataclasses.dataclass
class Measurement:
    """One row of a report: everything measured about one model file.

    Attributes:
        name: Display name (the file name unless given).
        path: The measured file.
        format: ``"pt"``, ``"onnx"`` or another suffix (see :func:`yoloslim.checkpoint.model_format`).
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
        source: The checkpoint or file this row's artifact was built from, or None when not known (the original,
            a file measured on its own).
        stage: The recipe stage that produced this row's artifact, or None (the original, a baseline, a file
            measured on its own).
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
    source: str | None = None
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the measurement as a JSON-serialisable dictionary (every field, ``None`` where not known)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- options


def _check_count(value: Any, option: str, what: str) -> int:
    """Return ``value`` if it is an integer >= 1, else raise a DataError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{option} {value!r}: {what} must be a whole number of at least 1; pass e.g. {option} 2")
    return value


def check_threads(threads: Any) -> int:
    """Check a CPU thread count (``--threads``).

    Args:
        threads: The requested count.

    Returns:
        ``threads``, unchanged.

    Raises:
        DataError: If it is not an integer >= 1.
    """
    return _check_count(threads, "--threads", "the CPU thread count")


def check_runs(runs: Any) -> int:
    """Check a number of timed runs (``--runs``).

    Args:
        runs: The requested count.

    Returns:
        ``runs``, unchanged.

    Raises:
        DataError: If it is not an integer >= 1.
    """
    return _check_count(runs, "--runs", "the number of timed runs")


def check_imgsz(imgsz: Any, stride: int = 32) -> int:
    """Check an image size against a model's stride (``--imgsz``).

    Ultralytics would silently round a size that is not a multiple of the stride up for accuracy while latency and
    GFLOPs ran at the size asked for, so such a size is refused instead.

    Args:
        imgsz: The requested square input size.
        stride: The model's largest stride (``int(model.stride.max())`` of a ``.pt``; 32 for YOLOv8/11/26, 64 for
            P6 models).

    Returns:
        ``imgsz``, unchanged.

    Raises:
        DataError: If ``imgsz`` is not an integer > 0 or not a multiple of ``stride``.
    """
    stride = max(int(stride), 1)
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % stride:
        if isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz > stride:
            below = imgsz // stride * stride
            hint = f"pass --imgsz {below} or {below + stride}"
        else:
            hint = f"pass e.g. --imgsz {max(stride, 320 // stride * stride)}"
        raise DataError(
            f"--imgsz {imgsz!r}: the image size must be a positive multiple of the model's stride {stride}; {hint}"
        )
    return imgsz


# --------------------------------------------------------------------------------------------- measure


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
        runtime_opener: ``opener(path, threads) -> runtime | None``, tried first for every file; None from it
            (or no opener) falls back to the built-in torch / ONNX Runtime runtimes.
        names: Display names, one per path; defaults to the file names.
        reference: The FP32 original (any format); when given, every row gets its agreement with it on the
            split's images (:mod:`yoloslim.agreement`), the measure of quality on images without labels.
        agreement_images: Most images of the split scored for agreement (spread evenly), None for all.

    Returns:
        One :class:`Measurement` per path, in order.

    Everything is checked before the first model is counted: with accuracy or a reference, every label file
    (:func:`yoloslim.dataset.check_labels`, accuracy only) and image
    (:func:`yoloslim.dataset.check_images`) of the split, and every model's classes against the
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
            stride = metadata_literal(metadata.get("stride"))
            check_imgsz(imgsz, stride if isinstance(stride, int) and stride > 0 else 32)
            if reads_split:
                check_class_names(metadata_literal(metadata.get("names")), dataset["names"], path, data)
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
        add_agreement(
            results, torch_models, Path(reference), dataset, split, imgsz, threads, runtime_opener, agreement_images
        )

    if latency and runs > 0:
        image = None
        if dataset is not None:
            images = split_images(dataset, split)
            if not images:
                raise DataError(f"{data}: no images in the '{split}' split for the latency input; pass another split")
            image = images[0]
        x = model_input(imgsz, image)
        with torch_threads(threads):
            runtimes = [
                open_runtime(path, m.format, threads, torch_models.get(i), runtime_opener)
                for i, (path, m) in enumerate(zip(paths, results))
            ]
            for m, runtime in zip(results, runtimes):
                m.device = str(getattr(runtime, "device", "cpu"))
            LOGGER.info("timing %d models: %d warmup + %d runs each, interleaved", len(runtimes), warmup, runs)
            times = time_interleaved(runtimes, x, warmup, runs)
        for m, seconds in zip(results, times):
            m.latency_p50_ms, m.latency_p90_ms, m.throughput_fps = latency_figures(seconds)
            m.runs = runs
            LOGGER.info("%s: p50 %.2f ms, p90 %.2f ms", m.path, m.latency_p50_ms, m.latency_p90_ms)
    return results
