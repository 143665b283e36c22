"""Model inputs: one image preprocessed as Ultralytics does (square letterbox, BGR to RGB, /255), batch 1.

:func:`model_input` is the one preprocessing of the measurement harness and of everything that must see what the
harness sees: the latency input, the agreement images, calibration batches (quantization) and parity checks
(export).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yoloslim.errors import DataError


def model_input(imgsz: int, image: str | Path | None = None) -> np.ndarray:
    """Return a model's input for one image: letterboxed to imgsz as a float32 (1, 3, imgsz, imgsz) RGB batch.

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
