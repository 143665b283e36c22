"""Raw detection-head outputs to boxes, for both layouts Ultralytics exports.

- **NMS layout** ``(batch, 4 + nc, anchors)``: every head's default (YOLOv8, YOLO11, and YOLO26 exported with
  ``nms=None``, its one-to-many branch): boxes ``cx, cy, w, h`` in input pixels, then class probabilities; boxes
  come from a confidence filter and per-class NMS (Ultralytics' ``non_max_suppression``, as its validator does).
- **End-to-end layout** ``(batch, k, 6)``: YOLO26's NMS-free one-to-one head (exported with ``nms=False``): the
  top-``k`` detections ``x1, y1, x2, y2, score, class`` in input pixels; only the confidence filter applies.

Every consumer of raw outputs (the deploy runtime, the agreement metric, the quantizer's self-check) decodes here,
so the two layouts behave the same everywhere.
"""

from __future__ import annotations

import numpy as np

from yoloslim.errors import ModelError


def is_end2end(shape: tuple[int, ...], nc: int) -> bool:
    """Whether a raw output of ``shape`` is the end-to-end layout ``(batch, k, 6)`` for a model of ``nc`` classes.

    Raises:
        ModelError: If the shape is neither layout.
    """
    if len(shape) != 3:
        raise ModelError(
            f"output shape {tuple(shape)} is not a detection head's: expected (batch, {4 + nc}, anchors) "
            "or the NMS-free (batch, k, 6)"
        )
    if shape[1] == 4 + nc:
        return False
    if shape[2] == 6:
        return True
    raise ModelError(
        f"output shape {tuple(shape)} is not a detection head's for {nc} classes: expected "
        f"(batch, {4 + nc}, anchors) or the NMS-free (batch, k, 6); export a detection model without "
        "embedded NMS (nms=None or nms=False)"
    )


def decode(
    raw: np.ndarray, nc: int, conf: float = 0.25, iou: float = 0.7, max_det: int = 300, end2end: bool | None = None
) -> list[np.ndarray]:
    """Detections per image from a raw output of either layout.

    Args:
        raw: ``(batch, 4 + nc, anchors)`` or ``(batch, k, 6)`` float array.
        nc: Number of classes of the model.
        conf: Confidence threshold (kept: ``score > conf``).
        iou: IoU threshold of the per-class NMS (NMS layout only).
        max_det: Most detections kept per image.
        end2end: The layout, when known (e.g. from metadata); ``None`` infers it from the shape.

    Returns:
        One ``(n, 6)`` float32 array per image: ``x1, y1, x2, y2, score, class`` in input pixels, highest score first.
    """
    import torch

    raw = np.asarray(raw, dtype=np.float32)
    if end2end is None:
        end2end = is_end2end(raw.shape, nc)
    if end2end:
        out = []
        for pred in raw:
            pred = pred[pred[:, 4] > conf]
            pred = pred[np.argsort(-pred[:, 4], kind="stable")][:max_det]
            out.append(np.ascontiguousarray(pred, dtype=np.float32))
        return out
    from ultralytics.utils.nms import non_max_suppression

    # Ultralytics' NMS gives up after 2 s + 0.05 s per image and silently drops the images it did not reach (a busy
    # CPU, conf 0.001): no time limit here, every image is decoded.
    kept = non_max_suppression(
        torch.from_numpy(raw), conf_thres=conf, iou_thres=iou, max_det=max_det, nc=nc, max_time_img=1e6
    )
    return [k.numpy().astype(np.float32) for k in kept]
