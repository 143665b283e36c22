"""Parity of an exported model with the PyTorch checkpoint it came from, on the same preprocessed images.

Both models get the same letterboxed batch, and the PyTorch model runs the head the export runs (YOLO26's
one-to-one head for an ``nms=False`` export). Raw outputs ``(batch, 4 + classes, anchors)`` are compared row-wise:
the four box rows in input pixels, the class rows as probabilities. End-to-end outputs ``(batch, k, 6)`` (the top
``k`` detections ``x1, y1, x2, y2, score, class``) are compared as sets, because two runtimes may order
near-equal scores differently and so swap detections within the list or across its cut at ``k``:

- scores: the sorted score lists of each image, element by element (independent of the order of ties);
- boxes: every detection of one output has a twin in the other (same class, score within the score tolerance)
  whose box is within the box tolerance; only detections within the score tolerance of the other output's lowest
  score are exempt, since they may have swapped places with one just below the cut.

Tolerances depend on the export's precision (see :data:`TOLERANCES`); they bound the largest absolute difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# (box pixels, class probability). FP32: ONNX Runtime's fused kernels reorder float sums. Measured here (yolov8n,
# 96-320 px): boxes <= 0.004 px, class probabilities <= 2.2e-4 for a head with large logits (the deploy tests'
# model) and <= 1e-7 for a freshly trained one; the bounds leave a margin of ~5x and stay far below anything that
# changes a detection. FP16 carries ~3 significant digits, so a coordinate near 640 px may move by about a pixel;
# measured here at 96 px: 0.25 px and 0.009 (large logits).
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (0.05, 1e-3),
    "fp16": (2.0, 2e-2),
    "int8": (8.0, 0.1),
}


@dataclass
class Parity:
    """Result of one parity check.

    Attributes:
        images: How many images were compared.
        max_box_diff: Largest absolute difference of a box coordinate, input pixels.
        max_score_diff: Largest absolute difference of a class probability.
        box_tol: The box tolerance applied.
        score_tol: The class-probability tolerance applied.
        ok: Both differences are within tolerance.
        end2end: The outputs compared were end-to-end ``(batch, k, 6)`` detections (compared as sets).
    """

    images: int
    max_box_diff: float
    max_score_diff: float
    box_tol: float
    score_tol: float
    ok: bool
    end2end: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in the export's metadata)."""
        return asdict(self)


def compare_outputs(
    reference: np.ndarray,
    candidate: np.ndarray,
    precision: str = "fp32",
    tolerance: tuple[float, float] | None = None,
    end2end: bool = False,
) -> Parity:
    """Compare two raw detection outputs of shape ``(batch, 4 + classes, anchors)``, or ``(batch, k, 6)`` when
    ``end2end`` (as sets, see the module's docstring).

    Args:
        reference: The PyTorch model's output.
        candidate: The exported model's output for the same input.
        precision: The export's precision; picks the default tolerance from :data:`TOLERANCES`.
        tolerance: ``(box pixels, class probability)`` overriding the default.
        end2end: The outputs are end-to-end detections ``x1, y1, x2, y2, score, class``.

    Returns:
        A :class:`Parity`.
    """
    box_tol, score_tol = tolerance or TOLERANCES.get(precision, TOLERANCES["fp32"])
    reference = np.asarray(reference, dtype=np.float32)
    candidate = np.asarray(candidate, dtype=np.float32)
    if reference.shape != candidate.shape:
        return Parity(reference.shape[0], float("inf"), float("inf"), box_tol, score_tol, False, end2end)
    if end2end:
        box, score = _end2end_diffs(reference, candidate, score_tol)
    else:
        box = float(np.abs(reference[:, :4] - candidate[:, :4]).max())
        score = float(np.abs(reference[:, 4:] - candidate[:, 4:]).max())
    return Parity(reference.shape[0], box, score, box_tol, score_tol, box <= box_tol and score <= score_tol, end2end)


def _end2end_diffs(reference: np.ndarray, candidate: np.ndarray, score_tol: float) -> tuple[float, float]:
    """Largest box and score differences of two ``(batch, k, 6)`` outputs, matched as sets of detections."""
    box = score = 0.0
    for ref, cand in zip(reference, candidate):
        score = max(score, float(np.abs(np.sort(ref[:, 4]) - np.sort(cand[:, 4])).max(initial=0.0)))
        for mine, other in ((cand, ref), (ref, cand)):
            mine = mine[mine[:, 4] > other[:, 4].min(initial=np.inf) + score_tol]  # the rest may sit past the cut
            if not len(mine):
                continue
            twin = (mine[:, None, 5] == other[None, :, 5]) & (np.abs(mine[:, None, 4] - other[None, :, 4]) <= score_tol)
            gap = np.abs(mine[:, None, :4] - other[None, :, :4]).max(2)
            box = max(box, float(np.where(twin, gap, np.inf).min(1).max()))
    return box, score


def parity_images(data: str | Path | None, count: int = 4, split: str = "val") -> list[Path | None]:
    """Pick up to ``count`` real images from a dataset's split, or ``[None]`` (a fixed synthetic image) without one."""
    if data is None:
        return [None]
    from yoloslim import check_dataset, split_images

    dataset = check_dataset(data)
    split = split if dataset.get(split) else ("val" if dataset.get("val") else "train")
    images = split_images(dataset, split)[:count]
    return list(images) or [None]


def letterboxed_batch(images: Sequence[Path | None], imgsz: int, batch: int) -> np.ndarray:
    """Letterbox ``images`` to ``imgsz`` and stack them into a float32 NCHW array, a multiple of ``batch`` long.

    Images are cycled to fill the last batch; the measurement harness's preprocessing is used so the
    check sees what measurement sees.
    """
    from yoloslim import model_input

    count = -(-len(images) // batch) * batch
    frames = [model_input(imgsz, images[i % len(images)]) for i in range(count)]
    return np.concatenate(frames, axis=0)


def torch_reference(checkpoint: str | Path, x: np.ndarray, end2end: bool = False, max_det: int = 300) -> np.ndarray:
    """Raw output of the checkpoint's fused float32 model on ``x`` (what Ultralytics' exporter traces).

    Args:
        checkpoint: The ``.pt`` the export came from.
        x: Letterboxed float32 NCHW batch.
        end2end: Run YOLO26's NMS-free one-to-one head (what an ``nms=False`` export runs) and return its top
            ``min(max_det, anchors)`` detections ``(batch, k, 6)``; a head without one ignores it, as the exporter does.
        max_det: ``k`` of an end-to-end output (the exporter's ``max_det``).
    """
    import torch

    from yoloslim import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    if hasattr(model, "end2end"):  # before fusing: fuse() drops the branch that is not selected
        model.end2end = end2end
        model.model[-1].max_det = max_det
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
    model.eval()
    with torch.inference_mode():
        y = model(torch.from_numpy(x))
    y = y[0] if isinstance(y, (list, tuple)) else y
    return y.float().numpy()


def onnx_output(model: str | Path | bytes, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Raw first output of an ONNX file (or serialized graph) on ``x`` with ONNX Runtime on the CPU, ``batch`` images
    per call."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
    step = batch or len(x)
    outputs = [session.run(None, {graph_input.name: x[i : i + step].astype(dtype)})[0] for i in range(0, len(x), step)]
    return np.concatenate(outputs).astype(np.float32)
