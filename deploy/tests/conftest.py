"""Fixtures of the deploy tests: the tiny dataset and ``detect_ckpt`` (see :mod:`deploy_helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_helpers import build_detecting_checkpoint, shared

# ``tests/`` modules import these with ``from conftest import ...``; when pytest runs both folders, the module named
# ``conftest`` may be this one, so it offers the same names (the same objects as tests/conftest.py's).
ROOT, load_generator = shared.ROOT, shared.load_generator
run_cli, subprocess_env = shared.run_cli, shared.subprocess_env

# Fixtures are scoped to their folder: the project's ``tiny_data`` is registered again for deploy/tests.
tiny_data = shared.tiny_data


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
