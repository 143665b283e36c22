"""ONNX export adapter: answers ``yoloslim_export`` for ``fmt="onnx"`` with Ultralytics' exporter.

Ultralytics writes the ONNX beside its source checkpoint and embeds its metadata (class names,
image size, stride); the adapter exports from a private copy in a temporary folder and renames the
result into place, so the source folder stays clean and a failure leaves no file at ``out``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from yoloslim import hookimpl
from yoloslim.errors import ExportError

LOGGER = logging.getLogger("yoloslim.deploy.onnx")


@hookimpl
def yoloslim_export(checkpoint: Path, fmt: str, out: Path, options: dict[str, Any]) -> Path | None:
    """Export ``checkpoint`` to ONNX at ``out`` (options: imgsz, opset, dynamic, half, simplify, batch)."""
    if fmt != "onnx":
        return None
    from ultralytics import YOLO

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"format": "onnx", "device": "cpu", "simplify": True, "verbose": False,
              **{k: v for k, v in options.items() if v is not None}}
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        src = Path(tmp) / Path(checkpoint).name
        shutil.copyfile(checkpoint, src)
        try:
            written = YOLO(str(src), task="detect").export(**kwargs)
        except Exception as e:
            raise ExportError(f"ONNX export of '{checkpoint}' failed: {type(e).__name__}: {e}") from e
        if not written or not Path(written).is_file():
            raise ExportError(f"ONNX export of '{checkpoint}' produced no file")
        os.replace(written, out)
    LOGGER.info("exported %s -> %s", checkpoint, out)
    return out
