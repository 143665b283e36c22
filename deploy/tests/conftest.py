"""Fixtures of the deploy tests: ``detect_ckpt`` and its YOLO11/YOLO26 siblings (see :mod:`deploy_helpers`), and
the tiny dataset's images."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import GEN_IMGSZ, build_detecting_checkpoint


@pytest.fixture(scope="session")
def detect_ckpt(tiny_data, tmp_path_factory) -> Path:
    """A yolov8n checkpoint (96 px) for the tiny dataset whose detections are confident and distinct."""
    return build_detecting_checkpoint(tiny_data, tmp_path_factory.mktemp("detect") / "detect.pt")


@pytest.fixture(scope="session")
def detect_ckpt_yolo11(tiny_data, tmp_path_factory) -> Path:
    """A YOLO11n checkpoint (64 px) for the tiny dataset whose detections are confident and distinct."""
    return build_detecting_checkpoint(
        tiny_data, tmp_path_factory.mktemp("detect11") / "yolo11n.pt", GEN_IMGSZ, cfg="yolo11n.yaml"
    )


@pytest.fixture(scope="session")
def detect_ckpt_yolo26(tiny_data, tmp_path_factory) -> Path:
    """A YOLO26n checkpoint (64 px) whose one-to-many and one-to-one (NMS-free) heads both detect confidently."""
    return build_detecting_checkpoint(
        tiny_data, tmp_path_factory.mktemp("detect26") / "yolo26n.pt", GEN_IMGSZ, cfg="yolo26n.yaml"
    )


@pytest.fixture(scope="session")
def detect_images(tiny_data) -> list[Path]:
    """The tiny dataset's validation images (real images, 64-96 px)."""
    images = sorted(p for p in (Path(tiny_data).parent / "images" / "val").rglob("*") if p.suffix in {".jpg", ".png"})
    assert images
    return images
