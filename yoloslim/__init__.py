"""yoloslim: make trained Ultralytics YOLO detectors small and fast.

Python API (mirrors the CLI)::

    import yoloslim
    result = yoloslim.compress("best.pt", data="data.yaml", recipe="recipes/demo.yaml")
    rows = yoloslim.measure(["best.pt", "best.onnx"], data="data.yaml")

Plugins implement the hooks in :mod:`yoloslim.hookspecs`, marked with :data:`yoloslim.hookimpl`.
"""

from __future__ import annotations

from typing import Any

from yoloslim.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "compress", "hookimpl", "measure"]


def compress(model: Any, data: Any, recipe: Any, **kwargs: Any) -> Any:
    """Run ``recipe`` on ``model``; see :func:`yoloslim.pipeline.compress`."""
    from yoloslim.pipeline import compress as _compress

    return _compress(model, data, recipe, **kwargs)


def measure(models: Any, data: Any, **kwargs: Any) -> Any:
    """Measure models with the one harness; see :func:`yoloslim.pipeline.measure_models`."""
    from yoloslim.pipeline import measure_models

    return measure_models(list(models) if not isinstance(models, (str, bytes)) else [models], data, **kwargs)
