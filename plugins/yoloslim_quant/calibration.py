"""Calibration images: real dataset images, preprocessed exactly as the measurement harness feeds a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from yoloslim import DataError


def split_to_calibrate_on(data: str | Path, split: str, where: str = "") -> list[Path]:
    """The images of the dataset split the ``calib_split`` option names, all of them, sorted.

    Args:
        data: Dataset YAML.
        split: The ``calib_split`` option.
        where: Names the stage in error messages (e.g. ``"stage 'quantize'"``; "" for none).

    Raises:
        DataError: Naming ``calib_split`` and the splits the dataset has, if it has no such split or the split holds
            no images.
    """
    from yoloslim import check_dataset, split_images

    dataset = check_dataset(data)
    prefix = f"{where}: " if where else ""
    if not dataset.get(split):
        have = ", ".join(s for s in ("train", "val", "test") if dataset.get(s))
        raise DataError(
            f"{prefix}calib_split '{split}': dataset '{data}' has no '{split}:' split to calibrate on; "
            f"set calib_split to one it has ({have})"
        )
    images = split_images(dataset, split)
    if not images:
        raise DataError(
            f"{prefix}calib_split '{split}': the '{split}' split of dataset '{data}' holds no images; "
            "put images there or set calib_split to another split"
        )
    return images


def calibration_images(data: str | Path, split: str = "train", count: int = 64) -> list[Path]:
    """Pick ``count`` images of a dataset split, spread evenly over the sorted split (deterministic).

    Raises:
        DataError: If the dataset has no such split or it holds no images.
    """
    images = split_to_calibrate_on(data, split)
    if count >= len(images):
        return images
    step = len(images) / count
    return [images[int(i * step)] for i in range(count)]


def load_batch(images: list[Path], imgsz: int) -> np.ndarray:
    """Letterbox ``images`` to ``imgsz`` (the harness's preprocessing) and stack them, float32 NCHW RGB in [0, 1]."""
    from yoloslim import model_input

    return np.concatenate([model_input(imgsz, p) for p in images], axis=0)


class ImageReader(CalibrationDataReader):
    """ONNX Runtime calibration reader over preprocessed images, one image per call (static batch 1)."""

    def __init__(self, batch: np.ndarray, input_name: str = "images") -> None:
        """Read ``batch`` (N, 3, H, W) one image at a time into the graph input ``input_name``."""
        self.batch = batch
        self.input_name = input_name
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next image, or None when all were read."""
        if self._i >= len(self.batch):
            return None
        self._i += 1
        return {self.input_name: self.batch[self._i - 1 : self._i]}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._i = 0

    def __len__(self) -> int:
        return len(self.batch)
