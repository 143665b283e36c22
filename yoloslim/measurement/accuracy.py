"""Accuracy: mAP from Ultralytics' validator with the harness's settings, and agreement with the FP32 original.

mAP needs labels; on images without labels (real footage) each row gets its agreement with the original instead
(:mod:`yoloslim.agreement`), which is never called accuracy.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from yoloslim.checkpoint import load_checkpoint, model_format
from yoloslim.dataset import split_images
from yoloslim.errors import DataError, ModelError
from yoloslim.measurement.inputs import model_input
from yoloslim.measurement.model_info import model_nc
from yoloslim.measurement.runtimes import RuntimeOpener, open_runtime, torch_threads

if TYPE_CHECKING:
    from yoloslim.measurement.harness import Measurement

LOGGER = logging.getLogger("yoloslim.measurement")


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


def add_agreement(
    results: list[Measurement],
    torch_models: dict[int, torch.nn.Module],
    reference: Path,
    dataset: dict[str, Any] | None,
    split: str,
    imgsz: int,
    threads: int,
    opener: RuntimeOpener | None,
    count: int | None,
) -> None:
    """Fill ``agreement`` of every row: each model against ``reference`` on the split's images.

    Args:
        results: The rows, one per model; their ``agreement`` is set.
        torch_models: Loaded (fused, eval) models of the ``.pt`` rows, by row index.
        reference: The FP32 original (any format); when it is one of the rows, that row's runtime serves both.
        dataset: The checked dataset dictionary.
        split: The split whose images are scored.
        imgsz: Square input size.
        threads: CPU threads of every runtime.
        opener: The plugins' runtime opener, or None.
        count: Most images scored (spread evenly over the split), None for all.

    Raises:
        DataError: If the split has no images.
        ModelError: If the reference's classes cannot be told.
    """
    from yoloslim.agreement import measure_agreement

    images = split_images(dataset or {}, split)
    if not images:
        raise DataError(f"no images in the '{split}' split to measure agreement on; pass another split")
    if count is not None and count < len(images):
        images = [images[int(i * len(images) / count)] for i in range(count)]
    # The reference is usually one of the rows (the original): its loaded model and runtime serve both roles.
    row = next((i for i, m in enumerate(results) if Path(m.path).resolve() == reference.resolve()), None)
    ref_model = torch_models.get(row) if row is not None else None
    if row is None and model_format(reference) == "pt":
        ref_model = load_checkpoint(reference)[0]
        ref_model = (ref_model.fuse(verbose=False) if hasattr(ref_model, "fuse") else ref_model).eval()
    nc = model_nc(reference, ref_model)
    if nc is None:
        raise ModelError(
            f"{reference}: cannot tell its classes (no names in its metadata); pass the .pt or the "
            "ONNX file Ultralytics exported"
        )
    with torch_threads(threads):
        runtimes = [
            open_runtime(Path(m.path), m.format, threads, torch_models.get(i), opener) for i, m in enumerate(results)
        ]
        ref_runtime = (
            runtimes[row]
            if row is not None
            else open_runtime(reference, model_format(reference), threads, ref_model, opener)
        )
        LOGGER.info("agreement with %s on %d '%s' images", reference, len(images), split)
        batches = (model_input(imgsz, p) for p in images)
        scores = measure_agreement(ref_runtime, runtimes, list(batches), nc)
    for m, a in zip(results, scores):
        m.agreement = {**a.to_dict(), "reference": str(reference), "split": split}
        LOGGER.info("%s: agreement mAP50-95 %.4f, F1@0.5 %.4f", m.path, a.map50_95, a.f1)
