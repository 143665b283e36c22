"""Fixtures of the quantization tests: FP32 ONNX exports of the tiny checkpoint and of the bundled student, made
once per session (``tiny_data`` and ``tiny_ckpt`` come from the ``yoloslim`` pytest plugin, yoloslim.testing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloslim_test_support import STUDENT


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_ckpt, tiny_data) -> Path:
    """The tiny checkpoint exported to FP32 ONNX at 64 px by the ONNX export adapter."""
    from yoloslim.context import SlimContext

    out = tmp_path_factory.mktemp("tiny-onnx") / "tiny_64.onnx"
    return SlimContext(imgsz=64, data=str(tiny_data)).export(tiny_ckpt, "onnx", out, imgsz=64)


@pytest.fixture(scope="session")
def student_onnx(tmp_path_factory, tiny_data) -> Path:
    """The bundled (trained) student exported to FP32 ONNX at 96 px: it detects the tiny dataset's shapes."""
    from yoloslim.context import SlimContext

    out = tmp_path_factory.mktemp("student-onnx") / "student_96.onnx"
    return SlimContext(imgsz=96, data=str(tiny_data)).export(STUDENT, "onnx", out, imgsz=96)
