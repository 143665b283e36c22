"""Training-only modules that map student features to the teacher's width, and the widths they are built from.

They live beside the model (in the run's state), never inside it, so no checkpoint stores them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class HeadInfo(NamedTuple):
    """What a detection model's ``Detect`` head sees and makes, read from one forward pass.

    Attributes:
        channels: Widths of the feature maps that feed ``Detect``, one per level.
        anchors: Number of anchors (positions over all levels) at the probe image size.
        reg_max: Box bins per side: DFL bins, or 1 for a head that regresses the distances directly (YOLO26).
        one2one: Whether the head has an NMS-free one-to-one branch beside its one-to-many one (YOLO26).
    """

    channels: list[int]
    anchors: int
    reg_max: int
    one2one: bool


def head_info(model: nn.Module, imgsz: int = 64) -> HeadInfo:
    """Run ``model`` once on a blank ``imgsz`` image and return what its ``Detect`` head sees and makes.

    The widths come from a forward pass, not from the YAML, so a pruned model's irregular widths are right.
    """
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, imgsz, imgsz, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
    raw = head_outputs(out)
    return HeadInfo(
        [f.shape[1] for f in raw["feats"]],
        raw["scores"].shape[-1],
        raw["boxes"].shape[1] // 4,
        one2one_outputs(out) is not None,
    )


def _raw(out: object) -> object:
    return out[1] if isinstance(out, (tuple, list)) else out


def head_outputs(out: object) -> dict:
    """The raw prediction dict of ``Detect`` from a model's output in train or eval mode (one-to-many branch).

    A head whose one-to-many branch was fused away (an end-to-end head after ``fuse()``) gives its one-to-one branch.
    """
    out = _raw(out)
    if isinstance(out, dict) and "one2many" in out:
        out = out["one2many"] or out.get("one2one")
    if not isinstance(out, dict) or "feats" not in out:
        raise TypeError(f"expected Ultralytics Detect outputs with 'boxes', 'scores' and 'feats', got {type(out)}")
    return out


def one2one_outputs(out: object) -> dict | None:
    """The raw one-to-one branch (``boxes``, ``scores``) of an end-to-end head beside its one-to-many one, else None."""
    out = _raw(out)
    if isinstance(out, dict) and out.get("one2many") and out.get("one2one"):
        return out["one2one"]
    return None


def align(c_in: int, c_out: int) -> nn.Module:
    """A learned 1x1 convolution from ``c_in`` to ``c_out`` channels; the identity when the widths agree."""
    return nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)


class MGDGenerator(nn.Module):
    """Masked generative distillation: mask student positions at random, then generate the teacher's feature.

    ``generated = align(masked) + block(masked)`` with ``block`` = 3x3 conv, ReLU, 1x1 conv to the teacher's
    width, its last layer zero-initialised, so a student that already equals the teacher starts at zero loss
    when nothing is masked. The 3x3 conv runs at the student's width, which keeps it cheap.
    """

    def __init__(self, c_student: int, c_teacher: int, mask_ratio: float) -> None:
        """Build the generator for one feature level."""
        super().__init__()
        self.mask_ratio = mask_ratio
        self.align = align(c_student, c_teacher)
        self.block = nn.Sequential(
            nn.Conv2d(c_student, c_student, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_student, c_teacher, 1)
        )
        nn.init.zeros_(self.block[-1].weight)
        nn.init.zeros_(self.block[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the feature generated from ``x`` with a random ``mask_ratio`` of its positions zeroed."""
        if self.mask_ratio > 0:
            n, _, h, w = x.shape
            keep = torch.rand(n, 1, h, w, device=x.device) >= self.mask_ratio
            x = x * keep.to(x.dtype)
        return self.align(x) + self.block(x)


def build_adapters(
    methods: tuple[str, ...], student: list[int], teacher: list[int], mgd_mask_ratio: float
) -> nn.ModuleDict:
    """Adapters of the feature methods among ``methods``, one per feature level, keyed ``<method>``.

    Args:
        methods: Active methods (``cwd``, ``sl2`` get a 1x1 alignment, ``mgd`` a generator; others nothing).
        student: Channels of the student's features that feed ``Detect``.
        teacher: Channels of the teacher's, same number of levels.
        mgd_mask_ratio: Masked fraction of positions for ``mgd``.
    """
    out = nn.ModuleDict()
    for m in methods:
        if m in ("cwd", "sl2"):
            out[m] = nn.ModuleList(align(s, t) for s, t in zip(student, teacher))
        elif m == "mgd":
            out[m] = nn.ModuleList(MGDGenerator(s, t, mgd_mask_ratio) for s, t in zip(student, teacher))
    return out
