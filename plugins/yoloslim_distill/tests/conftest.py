"""Fixtures of the distillation tests: the project's ``tiny_data`` and ``tiny_ckpt``, and a wider tiny teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
from distill_helpers import shared

# Fixtures are scoped to their folder: the project's fixtures are registered again for this one.
tiny_data = shared.tiny_data
tiny_ckpt = shared.tiny_ckpt


@pytest.fixture(scope="session")
def wide_teacher(tmp_path_factory, tiny_ckpt) -> Path:
    """An untrained YOLOv8s checkpoint (twice the student's widths) with the tiny student's class names."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim.checkpoint import save_checkpoint
    from yoloslim.model_io import load_checkpoint

    student, _ = load_checkpoint(tiny_ckpt)
    torch.manual_seed(1)
    teacher = DetectionModel("yolov8s.yaml", nc=len(student.names), verbose=False)
    teacher.names = dict(student.names)
    return save_checkpoint(teacher, tmp_path_factory.mktemp("teacher") / "teacher_s.pt")
