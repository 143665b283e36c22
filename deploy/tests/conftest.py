"""Fixtures of the deploy tests: ``detect_ckpt`` (see :mod:`deploy_helpers`) and the tiny dataset's images."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_helpers import build_detecting_checkpoint


@pytest.fixture(scope="session")
def detect_ckpt(tiny_data, tmp_path_factory) -> Path:
    """A yolov8n checkpoint (96 px) for the tiny dataset whose detections are confident and distinct."""
    return build_detecting_checkpoint(tiny_data, tmp_path_factory.mktemp("detect") / "detect.pt")


@pytest.fixture(scope="session")
def detect_images(tiny_data) -> list[Path]:
    """The tiny dataset's validation images (real images, 64-96 px)."""
    images = sorted(p for p in (Path(tiny_data).parent / "images" / "val").rglob("*") if p.suffix in {".jpg", ".png"})
    assert images
    return images
