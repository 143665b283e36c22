"""Fixture of the distillation tests: a wider tiny teacher (``tiny_ckpt`` comes from the ``yoloslim`` pytest plugin)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wide_teacher(tmp_path_factory, tiny_ckpt) -> Path:
    """An untrained YOLOv8s checkpoint (twice the student's widths) with the tiny student's class names."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim.checkpoint import load_checkpoint, save_checkpoint

    student, _ = load_checkpoint(tiny_ckpt)
    torch.manual_seed(1)
    teacher = DetectionModel("yolov8s.yaml", nc=len(student.names), verbose=False)
    teacher.names = dict(student.names)
    return save_checkpoint(teacher, tmp_path_factory.mktemp("teacher") / "teacher_s.pt")
