"""The ``export`` stage: turn the current checkpoint into a deployment file via ``yoloslim_export``.

The stage knows no format; whichever plugin answers the ``yoloslim_export`` hook for the
requested format (ONNX, TensorRT, ...) writes the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloslim import hookimpl
from yoloslim.recipe import Option, StageType

_SUFFIX = {"onnx": ".onnx", "engine": ".engine", "tensorrt": ".engine", "torchscript": ".torchscript"}


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare ``export`` with its format options."""
    return [StageType("export", produces="artifact", help="export the current checkpoint to a deployment format",
                      options={
                          "format": Option(str, "onnx", "format name answered by an export plugin"),
                          "opset": Option(int, None, "ONNX opset (default: the exporter's)"),
                          "dynamic": Option(bool, False, "dynamic batch axis"),
                          "half": Option(bool, False, "FP16 weights"),
                      })]


@hookimpl
def yoloslim_build_artifact(checkpoint: Path, stage: Any, ctx: Any) -> Path | None:
    """Export ``checkpoint`` into the stage directory."""
    if stage.type != "export":
        return None
    fmt = stage.options["format"]
    out = ctx.stage_dir / f"{stage.name}{_SUFFIX.get(fmt, '.' + fmt)}"
    options = {k: v for k, v in stage.options.items() if k != "format" and v is not None}
    return ctx.export(checkpoint, fmt, out, **options)
