"""The ``export`` stage: turn the current checkpoint into a deployment file via ``yoloslim_export``.

The stage knows no format; whichever plugin answers the ``yoloslim_export`` hook for the
requested format (ONNX, TensorRT, ...) writes the file. Before any stage runs, the format is checked
against what the loaded plugins declare through ``yoloslim_export_formats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoloslim import ExportError, StageType, hookimpl, option, options_dict

_SUFFIX = {"onnx": ".onnx", "engine": ".engine", "tensorrt": ".engine", "torchscript": ".torchscript"}


def unavailable(fmt: str, pm: Any) -> list[str] | None:
    """The formats available here when ``fmt`` is not among them, else None (``fmt`` can, or may, be exported).

    Args:
        fmt: A format name (e.g. ``"onnx"``).
        pm: The run's :class:`yoloslim.plugins.PluginManager`.
    """
    formats = pm.export_formats()
    return None if formats is None or fmt in formats else formats


# The fix when the format a stage needs is ONNX (or nothing is exportable): the first-party adapter is left out.
ENABLE_ONNX = (
    "enable yoloslim_deploy's 'onnx' plugin (see 'yoloslim plugins'; YOLOSLIM_PLUGINS or "
    "YOLOSLIM_DISABLE_PLUGINS may leave it out)"
)


@dataclass(frozen=True)
class ExportOptions:
    """Options of the ``export`` stage (passed to the exporting plugin as format options)."""

    format: str = option("onnx", help="format name answered by an export plugin (see 'yoloslim plugins')")
    opset: int | None = option(None, help="ONNX opset (default: the exporter's)", ge=7)
    dynamic: bool = option(False, help="dynamic batch axis")
    half: bool = option(False, help="FP16 weights")


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare ``export`` with its format options."""
    return [
        StageType(
            "export",
            options=ExportOptions,
            produces="artifact",
            help="export the current checkpoint to a deployment format",
        )
    ]


@hookimpl
def yoloslim_check_stage(stage: Any, ctx: Any) -> None:
    """Refuse, before any stage runs, an ``export`` stage whose format no loaded plugin exports."""
    if stage.type != "export":
        return
    fmt = stage.options.format
    formats = unavailable(fmt, ctx.get_plugins())
    if formats is None:
        return
    where = f"stage '{stage.name}': option 'format'"
    if not formats:
        raise ExportError(f"{where}: no loaded plugin exports format '{fmt}', nor any other; {ENABLE_ONNX}")
    raise ExportError(
        f"{where}: no loaded plugin exports format '{fmt}'; formats available here: "
        f"{', '.join(formats)}; set 'format' to one of them or install a plugin that exports '{fmt}'"
    )


@hookimpl
def yoloslim_build_artifact(checkpoint: Path, stage: Any, ctx: Any) -> Path | None:
    """Export ``checkpoint`` into the stage directory."""
    if stage.type != "export":
        return None
    fmt = stage.options.format
    out = ctx.stage_dir / f"{stage.name}{_SUFFIX.get(fmt, '.' + fmt)}"
    options = {k: v for k, v in options_dict(stage.options).items() if k != "format" and v is not None}
    return ctx.export(checkpoint, fmt, out, **options)
