"""``Detector``: one detection API over PyTorch (``.pt``), ONNX Runtime (``.onnx``) and TensorRT (``.engine``).

The same image gives the same detections whatever the format: every runtime gets the same square letterbox
(Ultralytics' ``LetterBox``, grey padding, centred), the raw output is decoded by :func:`yoloslim.detections.decode`
in either layout (``(batch, 4 + classes, anchors)`` with a confidence filter and per-class NMS, or YOLO26's NMS-free
``(batch, k, 6)`` with the confidence filter only), and boxes are mapped back to the original image with
Ultralytics' ``scale_boxes``.

Input: what ``cv2.imread`` and ``cv2.VideoCapture.read`` return, a uint8 BGR array of shape ``(H, W, 3)``. A
grayscale image (``(H, W)`` or ``(H, W, 1)``) and a BGRA one (``(H, W, 4)``) are converted to BGR; anything else
(``None``, an empty image, a float or uint16 image, 2 or 5 channels, a 1-D array) is refused with one
:class:`yoloslim.errors.DataError` line that says what to pass instead.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim import DataError, ModelError, decode_detections, is_end2end
from yoloslim_deploy.runtimes import open_runtime


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
        return [
            {"xyxy": [round(float(v), 2) for v in box], "conf": round(float(c), 4), "cls": int(k), "label": lab}
            for box, c, k, lab in zip(self.xyxy, self.conf, self.cls, self.labels)
        ]


def as_bgr(image: Any, index: int = 0) -> np.ndarray:
    """Check one input image and return it as a uint8 BGR ``(H, W, 3)`` array.

    A uint8 BGR image is returned as it is; grayscale (``(H, W)``, ``(H, W, 1)``) and BGRA (``(H, W, 4)``) uint8
    images are converted to BGR.

    Args:
        image: The image, as OpenCV reads it.
        index: Its position in the batch, for the message.

    Raises:
        DataError: If ``image`` is ``None``, not a numpy array, empty, not uint8, or not 2-D/3-D with 1, 3 or 4
            channels.
    """
    import cv2

    what = f"image {index}"
    if image is None:
        raise DataError(
            f"{what} is None (cv2.imread returns None for a file it cannot read, VideoCapture.read for "
            "a frame it cannot decode); check the path or skip the frame"
        )
    if not isinstance(image, np.ndarray):
        raise DataError(
            f"{what}: expected a numpy array (uint8 BGR, shape (H, W, 3)), got {type(image).__name__}; "
            "pass what cv2.imread returns"
        )
    if image.ndim not in (2, 3):
        raise DataError(
            f"{what}: expected a BGR array of shape (H, W, 3), got {image.ndim}-D shape "
            f"{tuple(image.shape)}; pass one image as cv2.imread returns it"
        )
    if image.size == 0:
        raise DataError(
            f"{what} is empty (shape {tuple(image.shape)}); pass an image with at least one pixel "
            "(an empty frame usually means the read failed)"
        )
    if image.dtype != np.uint8:
        hint = (
            "(img * 255).astype(np.uint8) for a float image in [0, 1]"
            if image.dtype.kind == "f"
            else "(img >> 8).astype(np.uint8) for a 16-bit image"
            if image.dtype == np.uint16
            else "img.astype(np.uint8) if its values are 0-255"
        )
        raise DataError(f"{what} has dtype {image.dtype}; pass uint8 BGR as OpenCV reads it, e.g. {hint}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return cv2.cvtColor(image if image.ndim == 2 else image[..., 0], cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise DataError(
        f"{what} has {channels} channels (shape {tuple(image.shape)}); pass BGR (3 channels), or "
        "grayscale (1) or BGRA (4), which are converted"
    )


def check_thresholds(conf: float, iou: float) -> None:
    """Check that the confidence and IoU thresholds are numbers in ``[0, 1]``.

    Raises:
        DataError: Naming the threshold out of range.
    """
    for name, value in (("conf", conf), ("iou", iou)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise DataError(f"{name}={value!r}: pass a number between 0 and 1")


class Detector:
    """Run a detection model on BGR images and return :class:`Detections` in original-image pixels.

    Example:
        >>> det = Detector("best.onnx")
        >>> d = det(cv2.imread("frame.jpg"))
        >>> d.xyxy, d.conf, d.cls

    Images are uint8 BGR arrays of shape ``(H, W, 3)``, as ``cv2.imread`` returns them; grayscale (``(H, W)``,
    ``(H, W, 1)``) and BGRA (``(H, W, 4)``) images are converted to BGR. A float or uint16 image is refused (convert
    it first, e.g. ``(img * 255).astype(np.uint8)`` for floats in ``[0, 1]``), as are ``None`` and empty images.

    Args:
        path: ``.pt`` checkpoint, ``.onnx`` export, or ``.engine`` (TensorRT) file with Ultralytics/yoloslim
            metadata.
        device: ``"cpu"`` or a GPU (``"cuda"``, ``"cuda:0"``, ``"0"``).
        conf: Confidence threshold.
        iou: IoU threshold of the per-class NMS (unused by an end-to-end model, which needs no NMS).
        max_det: Most detections kept per image.
        imgsz: Square input size, a positive multiple of the model's stride (default: the size in the model's
            metadata).
        batch: Images per inference call when the model's batch axis is dynamic.
        threads: CPU threads of the CPU runtimes.
        end2end: For a ``.pt`` YOLO26 checkpoint, run its NMS-free one-to-one head, as an ``nms=False`` export
            does (default: the one-to-many head and NMS, as the default export does). An exported file's layout is
            read from its metadata (else its output's shape); leave this unset for one.
        trust: For a ``.pt`` checkpoint, unpickle it without the safe-load allowlist (only for a file whose origin
            you trust); ``None`` follows the ``YOLOSLIM_TRUST_CHECKPOINTS`` environment variable.

    Attributes:
        runtime: The model file opened by :func:`yoloslim_deploy.runtimes.open_runtime` (``TorchRuntime``,
            ``OnnxRuntime`` or ``TensorRTRuntime``): ``runtime(x)`` maps a preprocessed batch to the raw output.
        meta: The model's :class:`~yoloslim_deploy.metadata.ModelMeta` (class names, input size, batch, layout).
        device: Where the runtime runs (``"cpu"``, ``"cuda:0"``).

    Raises:
        DataError: If ``path`` is not a path, or ``conf``, ``iou`` or ``imgsz`` is out of range.
        ModelError: If the file cannot be opened, lacks metadata, or its output is not a detection head's.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        imgsz: int | None = None,
        batch: int = 8,
        threads: int | None = None,
        end2end: bool | None = None,
        trust: bool | None = None,
    ):
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise DataError(f"Detector: model path {path!r}; pass the path to a .pt, .onnx or .engine file")
        check_thresholds(conf, iou)
        if imgsz is not None and (isinstance(imgsz, bool) or not isinstance(imgsz, numbers.Integral) or imgsz <= 0):
            raise DataError(
                f"imgsz={imgsz!r}: pass a positive multiple of the model's stride (e.g. 640), or leave "
                "it unset for the model's own size"
            )
        self.path = Path(path)
        self.runtime = open_runtime(self.path, device, threads, end2end, trust=trust)
        self.meta = self.runtime.meta
        self.end2end = self.meta.end2end  # None until the first output shows the layout
        self.names = self.meta.names
        fixed = self.meta.imgsz
        stride = int(self.meta.stride or 32)
        imgsz = None if imgsz is None else int(imgsz)
        if imgsz is not None and imgsz % stride:
            raise DataError(
                f"imgsz={imgsz}: not a multiple of {self.path.name}'s stride {stride}; pass e.g. "
                f"{max(stride, round(imgsz / stride) * stride)}"
            )
        if imgsz is not None and not self.meta.dynamic and imgsz != fixed[0]:
            raise ModelError(
                f"{self.path}: input is fixed to {fixed[0]} px but imgsz={imgsz} was asked for; "
                f"leave imgsz unset or export again at {imgsz}"
            )
        self.imgsz = int(imgsz or fixed[0])
        self.conf, self.iou, self.max_det = conf, iou, max_det
        largest = getattr(self.runtime, "max_batch", None)  # a dynamic TensorRT profile's upper bound
        self.batch = self.meta.batch or max(1, min(batch, largest) if largest else batch)
        self.device = self.runtime.device

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.path)!r}, device={self.device!r}, imgsz={self.imgsz}, batch={self.batch}, "
            f"end2end={self.end2end})"
        )

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Letterbox uint8 BGR images to ``imgsz`` and stack them as a float32 RGB NCHW batch in ``[0, 1]``.

        Raises:
            DataError: If an image is not one :func:`as_bgr` accepts.
        """
        from ultralytics.data.augment import LetterBox

        box = LetterBox(new_shape=(self.imgsz, self.imgsz), auto=False, scaleup=True)
        frames = [box(image=as_bgr(im, i))[..., ::-1].transpose(2, 0, 1) for i, im in enumerate(images)]
        return np.ascontiguousarray(np.stack(frames), dtype=np.float32) / 255.0

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs for a preprocessed batch, run in chunks of the model's batch (the last one padded)."""
        outputs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start : start + self.batch]
            n = len(chunk)
            if self.meta.batch is not None and n < self.meta.batch:  # a fixed batch: pad with blank images
                chunk = np.concatenate([chunk, np.zeros((self.meta.batch - n, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(self.runtime(chunk)[:n])
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
            raise ModelError(
                f"{self.path}: output shape {tuple(shape)} contradicts the metadata's layout "
                f"{expected} (end2end={self.end2end}); export the model again"
            )

    def postprocess(self, raw: np.ndarray, shapes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Decode raw outputs (either layout) and map the boxes back to each original image."""
        import torch
        from ultralytics.utils import ops

        results = []
        decoded = decode_detections(raw, len(self.names), self.conf, self.iou, self.max_det, self.end2end)
        for pred, shape in zip(decoded, shapes):
            boxes = ops.scale_boxes((self.imgsz, self.imgsz), torch.from_numpy(pred[:, :4].copy()), shape)
            results.append(
                Detections(
                    xyxy=boxes.numpy().astype(np.float32),
                    conf=pred[:, 4].copy(),
                    cls=pred[:, 5].round().astype(np.int64),
                    names=self.names,
                    shape=shape,
                )
            )
        return results

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detect objects in one image (returns :class:`Detections`) or a list of them (returns a list).

        Args:
            images: One uint8 BGR ``(H, W, 3)`` array (grayscale ``(H, W)``/``(H, W, 1)`` and BGRA ``(H, W, 4)`` are
                converted), a list of them, or a ``(N, H, W, 3)`` array.

        Raises:
            DataError: If an image is ``None``, empty, not uint8, or has a shape or channel count not listed above.
        """
        if images is None or (isinstance(images, np.ndarray) and images.ndim != 4):
            single = True  # one image; as_bgr says what is wrong with it, if anything
        elif isinstance(images, np.ndarray) or (hasattr(images, "__iter__") and not isinstance(images, (str, bytes))):
            single = False
        else:
            raise DataError(
                f"expected an image (numpy array) or a list of images, got {type(images).__name__}; "
                "pass what cv2.imread returns"
            )
        batch = [as_bgr(images)] if single else [as_bgr(im, i) for i, im in enumerate(images)]
        if not batch:
            return []
        x = self.preprocess(batch)
        detections = self.postprocess(self.infer(x), [tuple(im.shape[:2]) for im in batch])
        return detections[0] if single else detections
