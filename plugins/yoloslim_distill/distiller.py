"""Distiller: the teacher, the adapters and the weighted loss terms of one ``distill`` stage."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yoloslim.errors import ModelError

from . import losses
from .adapters import build_adapters, head_inputs, head_outputs
from .options import DistillOptions
from .teacher import Teacher, check_same_classes

HEAD_METHODS = ("logit", "ld")


def term_name(method: str) -> str:
    """Name of a method's loss term in the progress bar and ``results.csv`` (``train/kd_<method>``)."""
    return f"kd_{method}"


class Distiller:
    """Computes the distillation terms of a student's training batch.

    Args:
        teacher: The frozen teacher.
        student: The student (a ``DetectionModel``, pruned or not); only read to size the adapters.
        opts: The stage's validated options.
        imgsz: Image size of the dummy forward that reads the feature widths (any multiple of the largest stride).

    Raises:
        DataError: When teacher and student classes differ.
        ModelError: When their heads cannot be compared (levels, anchors, DFL bins) for the chosen methods.
    """

    def __init__(self, teacher: Teacher, student: nn.Module, opts: DistillOptions, imgsz: int = 64) -> None:
        """Check the pair and build the adapters on the student's device."""
        check_same_classes(teacher.model, student, teacher.path)
        device = next(student.parameters()).device
        self.teacher = teacher.to(device)
        self.opts = opts
        s_ch, s_anchors, s_bins = head_inputs(student, imgsz)
        t_ch, t_anchors, t_bins = head_inputs(teacher.model, imgsz)
        if len(s_ch) != len(t_ch):
            raise ModelError(f"teacher '{teacher.path}' feeds its head {len(t_ch)} feature levels but the student "
                             f"{len(s_ch)}; distil between detectors with the same levels")
        if s_anchors != t_anchors and any(m in opts.methods for m in HEAD_METHODS):
            raise ModelError(f"teacher '{teacher.path}' predicts {t_anchors} anchors at {imgsz} px but the student "
                             f"{s_anchors} (different strides); use feature methods (cwd, mgd, sl2) only")
        if s_bins != t_bins and "ld" in opts.methods:
            raise ModelError(f"teacher '{teacher.path}' has {t_bins} DFL bins per side but the student {s_bins}; "
                             "'ld' needs the same reg_max, drop it from 'method'")
        self.widths = {"student": s_ch, "teacher": t_ch}
        self.reg_max = s_bins
        self.adapters = build_adapters(opts.methods, s_ch, t_ch, opts.mgd_mask_ratio).to(device)
        self.adapters.train()

    def parameters(self) -> list[nn.Parameter]:
        """The trainable adapter parameters (none when every width already matches and mgd is off)."""
        return list(self.adapters.parameters())

    def losses(self, img: torch.Tensor, preds: Any, epoch: int = 0, epochs: int = 1) -> dict[str, torch.Tensor]:
        """Weighted distillation terms for one batch, keyed by :func:`term_name`.

        Args:
            img: The batch images, as the student saw them.
            preds: The student's raw training outputs for ``img``.
            epoch: 0-based current epoch (for a decaying weight).
            epochs: Total epochs of the stage.
        """
        student = head_outputs(preds)
        teacher = self.teacher(img)
        o = self.opts
        weight = losses.teacher_confidence(teacher["scores"])  # (B, A)
        out: dict[str, torch.Tensor] = {}
        for m in o.methods:
            if m == "logit":
                value = losses.logit_kd(student["scores"], teacher["scores"], o.temperature)
            elif m == "ld":
                value = losses.localization_kd(student["boxes"], teacher["boxes"], weight, self.reg_max,
                                               o.temperature)
            else:
                value = self._feature_loss(m, student["feats"], teacher["feats"], weight)
            out[term_name(m)] = value * o.weight_at(m, epoch, epochs)
        return out

    def _feature_loss(self, method: str, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor],
                      weight: torch.Tensor) -> torch.Tensor:
        """A feature method's loss summed over the levels that feed ``Detect`` (as Ultralytics sums ``loss_sl2``)."""
        adapters = self.adapters[method]
        total = s_feats[0].new_zeros((), dtype=torch.float32)
        if method == "sl2":
            scores = weight.split([f.shape[-2] * f.shape[-1] for f in t_feats], dim=-1)
        for i, (s, t) in enumerate(zip(s_feats, t_feats)):
            if s.shape[-2:] != t.shape[-2:]:
                raise ModelError(f"feature level {i}: student map {tuple(s.shape[-2:])} vs teacher "
                                 f"{tuple(t.shape[-2:])}; teacher and student need the same strides")
            mapped = adapters[i](s)
            if method == "cwd":
                total = total + losses.channel_wise_kd(mapped, t, self.opts.cwd_temperature)
            elif method == "mgd":
                total = total + losses.masked_generative_kd(mapped, t)
            else:
                total = total + losses.score_weighted_l2(mapped, t, scores[i])
        return total
