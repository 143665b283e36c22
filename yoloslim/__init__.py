"""yoloslim: make trained Ultralytics YOLO detectors small and fast.

Python API (mirrors the CLI)::

    import yoloslim
    result = yoloslim.compress("best.pt", data="data.yaml", recipe="recipes/demo.yaml")
    rows = yoloslim.measure(["best.pt", "best.onnx"], data="data.yaml")

This module is the whole public surface: a plugin imports what it needs from ``yoloslim`` (and its tests from
``yoloslim.testing``), never from the modules behind it, which may move between releases. Plugins implement the
hooks in :mod:`yoloslim.hookspecs`, marked with :data:`hookimpl`; ``docs/writing-a-plugin.md`` walks through one.

Names are imported on first use, so ``import yoloslim`` stays cheap (no torch, no Ultralytics).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from yoloslim.hookspecs import hookimpl

__version__ = "0.1.0"

# Public name -> (module, attribute) it is read from on first use.
_PUBLIC: dict[str, tuple[str, str]] = {
    # The plugin contract: stage types and their options, the run context, errors.
    "StageType": ("yoloslim.recipe", "StageType"),
    "Stage": ("yoloslim.recipe", "Stage"),
    "option": ("yoloslim.options", "option"),
    "REQUIRED": ("yoloslim.options", "REQUIRED"),
    "options_dict": ("yoloslim.options", "options_dict"),
    "SlimContext": ("yoloslim.context", "SlimContext"),
    "SlimTrainer": ("yoloslim.trainer", "SlimTrainer"),
    "YoloslimError": ("yoloslim.errors", "YoloslimError"),
    "RecipeError": ("yoloslim.errors", "RecipeError"),
    "ModelError": ("yoloslim.errors", "ModelError"),
    "DataError": ("yoloslim.errors", "DataError"),
    "ExportError": ("yoloslim.errors", "ExportError"),
    "PluginError": ("yoloslim.errors", "PluginError"),
    # Checkpoints and files.
    "load_checkpoint": ("yoloslim.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("yoloslim.checkpoint", "save_checkpoint"),
    "atomic_write_bytes": ("yoloslim.files", "atomic_write_bytes"),
    "atomic_write_text": ("yoloslim.files", "atomic_write_text"),
    "atomic_write_json": ("yoloslim.files", "atomic_write_json"),
    "atomic_copy": ("yoloslim.files", "atomic_copy"),
    "pid_alive": ("yoloslim.files", "pid_alive"),
    # Datasets.
    "check_dataset": ("yoloslim.dataset", "check_dataset"),
    "split_images": ("yoloslim.dataset", "split_images"),
    "has_labels": ("yoloslim.dataset", "has_labels"),
    # Model inputs, counting, timing, accuracy and agreement (the measurement harness's parts).
    "model_input": ("yoloslim.measurement", "model_input"),
    "torch_counts": ("yoloslim.measurement", "torch_counts"),
    "time_onnx": ("yoloslim.measurement", "time_onnx"),
    "validate": ("yoloslim.measurement", "validate"),
    "model_nc": ("yoloslim.measurement", "model_nc"),
    "onnx_class_count": ("yoloslim.measurement", "onnx_class_count"),
    "Measurement": ("yoloslim.measurement", "Measurement"),
    "compare_detections": ("yoloslim.agreement", "compare"),
    "decode_detections": ("yoloslim.detections", "decode"),
    "is_end2end": ("yoloslim.detections", "is_end2end"),
    # Model structure: what a structured pruner may change in an Ultralytics detection model.
    "make_prunable": ("yoloslim.structure", "make_prunable"),
    "prune_ignored_layers": ("yoloslim.structure", "prune_ignored_layers"),
    "check_prunable": ("yoloslim.structure", "check_prunable"),
    "raw_head_outputs": ("yoloslim.structure", "raw_head_outputs"),
    "SplitC2f": ("yoloslim.structure", "SplitC2f"),
    "SplitC2PSA": ("yoloslim.structure", "SplitC2PSA"),
    # Interrupts (SIGINT/SIGTERM) around work that swallows KeyboardInterrupt.
    "handled_signals": ("yoloslim.signals", "handled"),
}

__all__ = ["__version__", "compress", "hookimpl", "measure", *_PUBLIC]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from yoloslim.agreement import compare as compare_detections  # noqa: F401
    from yoloslim.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
    from yoloslim.context import SlimContext  # noqa: F401
    from yoloslim.dataset import check_dataset, has_labels, split_images  # noqa: F401
    from yoloslim.detections import decode as decode_detections  # noqa: F401
    from yoloslim.detections import is_end2end  # noqa: F401
    from yoloslim.errors import DataError, ExportError, ModelError, PluginError, RecipeError, YoloslimError  # noqa: F401
    from yoloslim.files import (  # noqa: F401
        atomic_copy,
        atomic_write_bytes,
        atomic_write_json,
        atomic_write_text,
        pid_alive,
    )
    from yoloslim.measurement import (  # noqa: F401
        Measurement,
        model_input,
        model_nc,
        onnx_class_count,
        time_onnx,
        torch_counts,
        validate,
    )
    from yoloslim.options import REQUIRED, option, options_dict  # noqa: F401
    from yoloslim.recipe import Stage, StageType  # noqa: F401
    from yoloslim.signals import handled as handled_signals  # noqa: F401
    from yoloslim.structure import (  # noqa: F401
        SplitC2f,
        SplitC2PSA,
        check_prunable,
        make_prunable,
        prune_ignored_layers,
        raw_head_outputs,
    )
    from yoloslim.trainer import SlimTrainer  # noqa: F401


def __getattr__(name: str) -> Any:
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'yoloslim' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def compress(model: Any, data: Any, recipe: Any, **kwargs: Any) -> Any:
    """Run ``recipe`` on ``model``; see :func:`yoloslim.pipeline.compress`."""
    from yoloslim.pipeline import compress as _compress

    return _compress(model, data, recipe, **kwargs)


def measure(models: Any, data: Any, **kwargs: Any) -> Any:
    """Measure models with the one harness; see :func:`yoloslim.pipeline.measure_models`."""
    from yoloslim.pipeline import measure_models

    return measure_models(list(models) if not isinstance(models, (str, bytes)) else [models], data, **kwargs)
