"""Sparsity and compressed size of a model file, for the report's sparsity columns."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np


def _onnx_weights(path: Path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) == 4]


def _pt_weights(path: Path) -> list[np.ndarray]:
    from yoloslim import load_checkpoint

    from .magnitude import prunable_weights

    model, _ = load_checkpoint(path)
    return [w.detach().numpy() for w in prunable_weights(model).values()]


def storage_stats(path: str | Path) -> dict[str, Any] | None:
    """Return ``sparsity`` (zero fraction of convolution weights), ``dense MB`` and ``zipped MB`` of a model file.

    ``zipped MB`` is the file deflated (zlib level 6): what zeros save on disk or over the wire, while a
    dense runtime still computes every weight. Returns None for formats other than ``.pt``/``.onnx``.
    """
    path = Path(path)
    if path.suffix == ".pt":
        weights = _pt_weights(path)
    elif path.suffix == ".onnx":
        weights = _onnx_weights(path)
    else:
        return None
    total = sum(w.size for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    data = path.read_bytes()
    return {
        "sparsity": round(zeros / max(1, total), 4),
        "dense MB": round(len(data) / 1e6, 3),
        "zipped MB": round(len(zlib.compress(data, 6)) / 1e6, 3),
    }
