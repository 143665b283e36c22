"""``Detector``: one detection API over PyTorch (``.pt``), ONNX Runtime (``.onnx``) and TensorRT (``.engine``).

The same image gives the same detections whatever the format: every backend gets the same square letterbox
(Ultralytics' ``LetterBox``, grey padding, centred), the raw output is decoded by :func:`yoloslim.detections.decode`
in either layout (``(batch, 4 + classes, anchors)`` with a confidence filter and per-class NMS, or YOLO26's NMS-free
``(batch, k, 6)`` with the confidence filter only), and boxes are mapped back to the original image with
Ultralytics' ``scale_boxes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim.detections import decode, is_end2end
from yoloslim.errors import DataError, ModelError

from yoloslim_deploy.backends import open_backend


@dataclass
class Detections:
    """The detections in one image.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes, x1 y1 x2 y2 in original-image pixels.
        conf: ``(N,)`` float32 confidences, highest first.
        cls: ``(N,)`` int64 class indices.
        names: Class index -> name.
        shape: ``(height, width)`` of the original image.
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.conf)

    @property
    def labels(self) -> list[str]:
        """Class name of each detection."""
        return [self.names.get(int(c), str(int(c))) for c in self.cls]

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-serialisable detections: ``[{"xyxy": [...], "conf": c, "cls": k, "label": name}, ...]``."""
        return [{"xyxy": [round(float(v), 2) for v in box], "conf": round(float(c), 4), "cls": int(k), "label": lab}
                for box, c, k, lab in zip(self.xyxy, self.conf, self.cls, self.labels)]


class Detector:
    """Run a detection model on BGR images and return :class:`Detections` in original-image pixels.

    Example:
        >>> det = Detector("best.onnx")
        >>> d = det(cv2.imread("frame.jpg"))
        >>> d.xyxy, d.conf, d.cls

    Args:
        path: ``.pt`` checkpoint, ``.onnx`` export, or ``.engine`` (TensorRT) file with Ultralytics/yoloslim
            metadata.
        device: ``"cpu"`` or a GPU (``"cuda"``, ``"cuda:0"``, ``"0"``).
        conf: Confidence threshold.
        iou: IoU threshold of the per-class NMS (unused by an end-to-end model, which needs no NMS).
        max_det: Most detections kept per image.
        imgsz: Square input size (default: the size in the model's metadata).
        batch: Images per inference call when the model's batch axis is dynamic.
        threads: CPU threads of the CPU runtimes.
        end2end: For a ``.pt`` YOLO26 checkpoint, run its NMS-free one-to-one head, as an ``nms=False`` export
            does (default: the one-to-many head and NMS, as the default export does). An exported file's layout is
            read from its metadata (else its output's shape); leave this unset for one.

    Raises:
        ModelError: If the file cannot be opened, lacks metadata, or its output is not a detection head's.
    """

    def __init__(self, path: str | Path, device: str = "cpu", conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300, imgsz: int | None = None, batch: int = 8, threads: int | None = None,
                 end2end: bool | None = None):
        self.path = Path(path)
        self.backend = open_backend(self.path, device, threads, end2end)
        self.meta = self.backend.meta
        self.end2end = self.meta.end2end  # None until the first output shows the layout
        self.names = self.meta.names
        fixed = self.meta.imgsz
        if imgsz is not None and not self.meta.dynamic and imgsz != fixed[0]:
            raise ModelError(f"{self.path}: input is fixed to {fixed[0]} px but imgsz={imgsz} was asked for; "
                             f"leave imgsz unset or export again at {imgsz}")
        self.imgsz = int(imgsz or fixed[0])
        self.conf, self.iou, self.max_det = conf, iou, max_det
        largest = getattr(self.backend, "max_batch", None)  # a dynamic TensorRT profile's upper bound
        self.batch = self.meta.batch or max(1, min(batch, largest) if largest else batch)
        self.device = self.backend.device

    def __repr__(self) -> str:
        return (f"Detector({str(self.path)!r}, device={self.device!r}, imgsz={self.imgsz}, batch={self.batch}, "
                f"end2end={self.end2end})")

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Letterbox BGR uint8 images to ``imgsz`` and stack them as a float32 RGB NCHW batch in ``[0, 1]``."""
        from ultralytics.data.augment import LetterBox

        box = LetterBox(new_shape=(self.imgsz, self.imgsz), auto=False, scaleup=True)
        frames = []
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3:
                shape = getattr(im, "shape", type(im).__name__)
                raise DataError(f"image {i}: expected a BGR array of shape (H, W, 3), got {shape}; "
                                "pass what cv2.imread returns")
            frames.append(box(image=im)[..., ::-1].transpose(2, 0, 1))
        return np.ascontiguousarray(np.stack(frames), dtype=np.float32) / 255.0

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs for a preprocessed batch, run in chunks of the model's batch (the last one padded)."""
        outputs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            n = len(chunk)
            if self.meta.batch is not None and n < self.meta.batch:  # a fixed batch: pad with blank images
                chunk = np.concatenate([chunk, np.zeros((self.meta.batch - n, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self.backend(chunk)[:n])
        raw = np.concatenate(outputs)
        self._check_layout(raw.shape)
        return raw

    def _check_layout(self, shape: tuple[int, ...]) -> None:
        """Settle :attr:`end2end` from the first output, or check that an output has the layout the metadata says."""
        nc = len(self.names)
        try:
            by_shape = is_end2end(shape, nc)
        except ModelError as e:
            raise ModelError(f"{self.path}: {e}") from e
        if self.end2end is None:
            self.end2end = by_shape
        elif self.end2end != by_shape and not (self.end2end and len(shape) == 3 and shape[2] == 6):
            expected = "(batch, k, 6)" if self.end2end else f"(batch, {4 + nc}, anchors)"
            raise ModelError(f"{self.path}: output shape {tuple(shape)} contradicts the metadata's layout "
                             f"{expected} (end2end={self.end2end}); export the model again")

    def postprocess(self, raw: np.ndarray, shapes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Decode raw outputs (either layout) and map the boxes back to each original image."""
        import torch
        from ultralytics.utils import ops

        results = []
        for pred, shape in zip(decode(raw, len(self.names), self.conf, self.iou, self.max_det, self.end2end), shapes):
            boxes = ops.scale_boxes((self.imgsz, self.imgsz), torch.from_numpy(pred[:, :4].copy()), shape)
            results.append(Detections(xyxy=boxes.numpy().astype(np.float32), conf=pred[:, 4].copy(),
                                      cls=pred[:, 5].round().astype(np.int64), names=self.names, shape=shape))
        return results

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detect objects in one BGR image (returns :class:`Detections`) or a list of them (returns a list)."""
        single = isinstance(images, np.ndarray) and images.ndim == 3
        batch = [images] if single else list(images)
        if not batch:
            return []
        x = self.preprocess(batch)
        detections = self.postprocess(self.infer(x), [tuple(im.shape[:2]) for im in batch])
        return detections[0] if single else detections
