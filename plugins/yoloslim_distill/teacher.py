"""The frozen teacher: loaded from an Ultralytics detection checkpoint, checked against the student, run w/o grad."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yoloslim import DataError, ModelError

from .adapters import head_outputs, one2one_outputs


def class_names(model: nn.Module) -> list[str]:
    """The class names of a detection model, in class-index order."""
    names = getattr(model, "names", None) or {}
    return list(names.values()) if isinstance(names, dict) else list(names)


def check_same_classes(teacher: nn.Module, student: nn.Module, teacher_path: str | Path) -> None:
    """Raise DataError naming both lists when teacher and student do not predict the same classes, in order."""
    t, s = class_names(teacher), class_names(student)
    if t != s:
        raise DataError(
            f"teacher '{teacher_path}' has classes {t} but the student has {s}; distillation needs a teacher "
            "trained on the student's classes, in the same order"
        )


def check_teacher(path: str | Path, data: str | Path | None, where: str = "stage 'distill'") -> nn.Module:
    """Load the teacher the ``teacher`` option names and check it against the dataset, before any stage runs.

    Args:
        path: The ``teacher`` option.
        data: The run's dataset YAML (its class names are compared), or None to skip that comparison.
        where: Names the stage in error messages.

    Returns:
        The teacher model as loaded (float32, eval mode, CPU).

    Raises:
        ModelError: If the file is missing, is not a loadable checkpoint, or holds a model of another task.
        DataError: If its class names are not the dataset's, in the same order.
    """
    from yoloslim import check_dataset, load_checkpoint

    if not Path(path).is_file():
        raise ModelError(
            f"{where}: teacher '{path}' not found; set 'teacher' to an existing Ultralytics detection "
            "checkpoint (.pt) trained on the dataset's classes"
        )
    try:
        model, _ = load_checkpoint(path)
    except ModelError as e:
        raise ModelError(f"{where}: option 'teacher': {e}") from None
    if data is not None:
        names = list(check_dataset(data)["names"].values())
        if class_names(model) != names:
            raise DataError(
                f"{where}: teacher '{path}' has classes {class_names(model)} but dataset '{data}' has "
                f"{names}; set 'teacher' to a checkpoint trained on the dataset's classes, in its order"
            )
    return model


def _precision(requested: str, device: torch.device) -> torch.dtype | None:
    if requested == "fp32":
        return None
    if requested == "auto":
        if device.type == "cuda":
            return torch.float16
        supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return torch.bfloat16 if device.type == "cpu" and supported is not None and supported() else None
    return torch.bfloat16 if requested == "bf16" else torch.float16


class Teacher:
    """A frozen detection model in eval mode, fused, whose raw head outputs are computed without autograd.

    Kept outside the student (in the run's state), so it is never trained, never in the student's EMA and never
    in a checkpoint.
    """

    def __init__(self, model: nn.Module, path: str | Path, precision: str = "auto") -> None:
        """Freeze ``model`` (loaded from ``path``); ``precision`` as the stage's ``teacher_precision``."""
        self.path = str(path)
        for p in model.parameters():
            p.requires_grad_(False)
        model = model.float().eval()
        head = model.model[-1]
        if getattr(head, "one2one_cv2", None) is None and hasattr(model, "fuse"):
            model = model.fuse(verbose=False)  # folds BatchNorm; end-to-end heads keep both branches unfused
        self.model = model.eval()
        self.precision = precision
        self.dtype: torch.dtype | None = None

    @classmethod
    def load(cls, path: str | Path, precision: str = "auto") -> Teacher:
        """Load the teacher checkpoint at ``path`` with yoloslim's checkpoint loader (clear errors, no download)."""
        from yoloslim import load_checkpoint

        model, _ = load_checkpoint(path)
        return cls(model, path, precision)

    def to(self, device: torch.device | str) -> Teacher:
        """Move the teacher to ``device`` and pick its forward precision there."""
        device = torch.device(device)
        self.model.to(device)
        self.dtype = _precision(self.precision, device)
        return self

    def __call__(self, img: torch.Tensor) -> dict[str, Any]:
        """Raw ``Detect`` outputs of the teacher for ``img``: float32 ``scores``, ``boxes`` and ``feats``.

        ``one2one`` holds the ``scores`` and ``boxes`` of an end-to-end head's one-to-one branch (YOLO26), else None.
        Run under ``torch.inference_mode`` (optionally in reduced precision), then copied to ordinary tensors so
        the student's losses may save them for backward.
        """
        device = img.device
        cast = torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()
        with torch.inference_mode(), cast:
            out = self.model(img)
            raw, o2o = head_outputs(out), one2one_outputs(out)
            scores, boxes, feats = raw["scores"], raw["boxes"], list(raw["feats"])
            o2o = None if o2o is None else {k: o2o[k] for k in ("scores", "boxes")}
        return {
            "scores": scores.float().clone(),
            "boxes": boxes.float().clone(),
            "feats": [f.float().clone() for f in feats],
            "one2one": None if o2o is None else {k: v.float().clone() for k, v in o2o.items()},
        }
