"""What a model file says about itself: ONNX metadata and task, stride, and class count.

Ultralytics' exporter writes ``task``, ``names``, ``stride`` and more into an ONNX file's ``metadata_props`` (as
``str()`` of the Python value); a ``.pt`` carries them on the model. The harness reads them to refuse a model of
another task, an imgsz off the stride, or classes other than the dataset's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from yoloslim.errors import ModelError


def metadata_literal(value: str | None) -> Any:
    """A metadata value Ultralytics' exporter wrote with ``str()`` (``"32"``, ``"{0: 'person'}"``), or None."""
    import ast

    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (Ultralytics writes ``task``, ``names``, ``stride``, ...).

    Raises:
        ModelError: If the file cannot be read as ONNX.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e}); export it again") from e
    return {p.key: p.value for p in model.metadata_props}


def check_onnx_task(path: str | Path, metadata: dict[str, str]) -> None:
    """Refuse an ONNX file whose Ultralytics metadata names a task other than ``detect`` (OBB, segment, ...).

    A file without a ``task`` entry (not exported by Ultralytics) is not refused here.

    Raises:
        ModelError: Naming the file and its task.
    """
    task = metadata.get("task")
    if task is not None and task != "detect":
        raise ModelError(
            f"{path}: holds a '{task}' model (ONNX metadata), yoloslim measures detection models only; "
            f"pass a model exported from a checkpoint trained with task=detect"
        )


def model_stride(model: torch.nn.Module) -> int:
    """The largest stride of an Ultralytics model (32 when it does not say)."""
    stride = getattr(model, "stride", None)
    return int(stride.max()) if isinstance(stride, torch.Tensor) and stride.numel() else 32


def onnx_class_count(model: Any) -> int | None:
    """Number of classes of a loaded ONNX model, from the class names Ultralytics' exporter stores in its metadata."""
    names = metadata_literal(next((p.value for p in model.metadata_props if p.key == "names"), None))
    return None if names is None else len(names)


def model_nc(path: Path, torch_model: torch.nn.Module | None = None) -> int | None:
    """Number of classes of a model file: the torch model's names, or an ONNX file's Ultralytics metadata."""
    if torch_model is not None and getattr(torch_model, "names", None) is not None:
        return len(torch_model.names)
    if path.suffix.lower() == ".onnx":
        import onnx

        return onnx_class_count(onnx.load(str(path), load_external_data=False))
    return None
