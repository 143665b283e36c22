"""The quantization plugin's hook implementations: the ``quantize`` stage and QAT's training-loop behaviour.

- ``yoloslim_stage_types`` declares ``quantize`` (an artifact stage: it writes an ``.onnx`` file), which also
  gives the command ``yoloslim quantize MODEL --data D --mode ptq|qat|mixed --target cpu|tensorrt --out F.onnx``.
- ``yoloslim_check_stage`` checks, before any stage runs, what the stage needs from the run: an exporter of ONNX
  and, for static quantization, a ``calib_split`` the dataset has, with images.
- ``yoloslim_build_artifact`` runs :func:`yoloslim_quant.quantizer.quantize_checkpoint`; mode ``qat`` fine-tunes
  through the core's :func:`yoloslim.pipeline.finetune` (SlimTrainer, every plugin's training hooks firing).
- ``yoloslim_model_to_save`` strips the fake quantizers from every checkpoint QAT writes (a plain Ultralytics
  checkpoint carrying the learned ranges), so ``best.pt`` loads anywhere.
- ``yoloslim_report_columns`` adds ``precision`` and ``float layers`` to rows of quantized files.
- ``yoloslim_export`` writes the format ``onnx-int8``: the ``quantize`` stage's default PTQ (INT8, cpu target),
  so that whatever exports a model to measure it (``yoloslim profile``, a pruning stage's latency budget) can ask
  for the INT8 file the recipe's quantize stage would write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from yoloslim import DataError, ExportError, StageType, hookimpl

from .options import STAGE_TYPE

INT8_FORMAT = "onnx-int8"

# Precisions that calibrate activation ranges on dataset images (weight_only and fp16 read no image).
CALIBRATED = ("int8", "w8a16")


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare the ``quantize`` stage."""
    return [STAGE_TYPE]


@hookimpl
def yoloslim_check_stage(stage: Any, ctx: Any) -> None:
    """Before any stage runs: an ONNX exporter is loaded and, for static quantization, ``calib_split`` has images."""
    if stage.type != "quantize":
        return
    from .calibration import split_to_calibrate_on

    where = f"stage '{stage.name}'"
    opts = stage.options
    formats = ctx.get_plugins().export_formats()
    if formats is not None:
        formats = [f for f in formats if f != INT8_FORMAT]  # this plugin's own format starts from 'onnx' too
    if formats is not None and "onnx" not in formats:
        raise ExportError(
            f"{where}: quantization starts from an ONNX export of the model, but no loaded plugin "
            f"exports format 'onnx' (formats available here: {', '.join(formats) or 'none'}); enable "
            f"yoloslim_deploy's 'onnx' plugin (see 'yoloslim plugins'; YOLOSLIM_PLUGINS or "
            f"YOLOSLIM_DISABLE_PLUGINS may leave it out)"
        )
    if opts.precision in CALIBRATED:
        if ctx.data is None:
            raise DataError(f"{where}: precision '{opts.precision}' calibrates on dataset images; pass --data")
        split_to_calibrate_on(ctx.data, opts.calib_split, where)


@hookimpl
def yoloslim_build_artifact(checkpoint: Path, stage: Any, ctx: Any) -> Path | None:
    """Quantize ``checkpoint`` into ``<stage dir>/<stage name>.onnx``."""
    if stage.type != "quantize":
        return None
    from .quantizer import quantize_checkpoint

    opts = stage.options
    out = ctx.stage_dir / f"{stage.name}.onnx"
    return quantize_checkpoint(checkpoint, out, opts, ctx, stage=stage, workdir=ctx.stage_dir / "work")


@hookimpl
def yoloslim_export_formats() -> list[str]:
    """``onnx-int8``: the quantize stage's static INT8 PTQ as an export format."""
    return [INT8_FORMAT]


@hookimpl
def yoloslim_export(checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> Path | None:
    """Write ``onnx-int8``: the quantize stage's PTQ with its defaults, calibrated on ``ctx.data``.

    Options: ``imgsz`` and any ``quantize`` stage option (``calib_images``, ``calib_split``, ``target``, ...), as in a
    recipe. Intermediate files go to a temporary folder beside ``out``.
    """
    if fmt != INT8_FORMAT:
        return None
    import dataclasses
    import shutil
    import tempfile

    from .quantizer import quantize_checkpoint

    options = dict(options)
    imgsz = int(options.pop("imgsz", ctx.imgsz))
    opts = STAGE_TYPE.parse({"mode": "ptq", "precision": "int8", **options}, 0, f"format '{INT8_FORMAT}'")
    if ctx.data is None:
        raise DataError(f"format '{INT8_FORMAT}' calibrates on dataset images; pass --data")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".int8-{os.getpid()}-", dir=out.parent))
    try:
        return quantize_checkpoint(checkpoint, out, opts, dataclasses.replace(ctx, imgsz=imgsz), workdir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@hookimpl
def yoloslim_model_to_save(model: nn.Module, ctx: Any) -> nn.Module | None:
    """Save QAT models without their fake quantizers (ranges kept as ``yoloslim_qat_ranges``).

    Decided by the model itself, not by ``ctx.state`` (which a DDP rank does not inherit): no checkpoint ever pickles
    a :class:`~yoloslim_quant.qat.FakeQuantConv`, so every file QAT writes loads without this plugin's classes.
    """
    from .qat import fake_quant_modules, strip

    return strip(model) if fake_quant_modules(model) else None


@hookimpl
def yoloslim_report_columns(measurement: Any, ctx: Any) -> dict[str, Any] | None:
    """``precision`` and ``float layers`` of quantized ONNX rows."""
    path = Path(measurement.path)
    if path.suffix != ".onnx" or not path.is_file():
        return None
    import onnx

    from .graph import yoloslim_metadata

    entry = yoloslim_metadata(onnx.load(str(path), load_external_data=False))
    q = entry.get("quantization")
    if not q:
        return None
    return {
        "precision": entry.get("precision"),
        "float layers": len(q.get("float_layers") or []),
        "target": q.get("target"),
    }
