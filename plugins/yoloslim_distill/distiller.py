"""Distiller: the teacher, the adapters and the weighted loss terms of one ``distill`` stage."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from yoloslim import ModelError

from . import losses
from .adapters import build_adapters, head_info, head_outputs, one2one_outputs
from .options import DistillOptions
from .pairing import fit_methods
from .resample import teacher_input, to_student_grid
from .teacher import Teacher, check_same_classes


def term_name(method: str) -> str:
    """Name of a method's loss term in the progress bar and ``results.csv`` (``train/kd_<method>``)."""
    return f"kd_{method}"


class Distiller:
    """Computes the distillation terms of a student's training batch.

    The head methods (``logit``, ``ld``) compare the one-to-many branches, which Ultralytics' loss trains in every
    model. When both models also have an NMS-free one-to-one branch (YOLO26 taught by YOLO26), the same term is
    computed on the one-to-one branches as well and the two are averaged, so the branch NMS-free deployment runs
    learns from the teacher's own one-to-one scores. A teacher without that branch teaches the one-to-many branch
    only: its scores (several anchors per object) would fight the student's one-to-one assignment.

    Args:
        teacher: The frozen teacher.
        student: The student (a ``DetectionModel``, pruned or not); only read to size the adapters.
        opts: The stage's validated options.
        imgsz: Image size of the dummy forward that reads the feature widths (any multiple of the largest stride).

    Attributes:
        opts: The options with the default methods the pair cannot use left out (:func:`~.pairing.fit_methods`).
        notes: One line per default method left out.

    Raises:
        DataError: When teacher and student classes differ.
        ModelError: When their heads see different feature levels or strides.
        RecipeError: When a method named in the options cannot distil this pair (e.g. ``ld`` without common DFL bins).
    """

    def __init__(self, teacher: Teacher, student: nn.Module, opts: DistillOptions, imgsz: int = 64) -> None:
        """Check the pair and build the adapters on the student's device."""
        check_same_classes(teacher.model, student, teacher.path)
        device = next(student.parameters()).device
        s_info, t_info = head_info(student, imgsz), head_info(teacher.model, imgsz)
        self.opts, self.notes = fit_methods(opts, s_info, t_info)
        self.teacher = teacher.to(device)
        self.widths = {"student": s_info.channels, "teacher": t_info.channels}
        self.reg_max = s_info.reg_max
        self.stride = int(max(getattr(teacher.model, "stride", torch.tensor([32.0])).tolist()))
        self.one2one = s_info.one2one and t_info.one2one
        self.adapters = build_adapters(
            self.opts.methods, s_info.channels, t_info.channels, self.opts.mgd_mask_ratio
        ).to(device)
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
        o = self.opts
        weights = {m: o.weight_at(m, epoch, epochs) for m in o.methods}
        if not any(weights.values()):  # decayed to 0 (final_weight 0): no teacher pass; same terms for the logs
            zero = torch.zeros((), device=img.device)
            return {term_name(m): zero for m in o.methods}
        student = head_outputs(preds)
        teacher = self.teacher(teacher_input(img, o.teacher_scale, self.stride))
        if o.teacher_scale != 1.0:
            s_shapes = [tuple(f.shape[-2:]) for f in student["feats"]]
            teacher = to_student_grid(teacher, s_shapes, self.reg_max, o.temperature)
        branches = [(student, teacher)]
        if self.one2one and teacher["one2one"] is not None:
            s_o2o = one2one_outputs(preds)
            if s_o2o is not None:
                branches.append((s_o2o, teacher["one2one"]))
        weight = losses.teacher_confidence(teacher["scores"])  # (B, A)
        out: dict[str, torch.Tensor] = {}
        for m in o.methods:
            if m in ("logit", "ld"):
                value = sum(self._head_loss(m, s, t) for s, t in branches) / len(branches)
            else:
                value = self._feature_loss(m, student["feats"], teacher["feats"], weight)
            out[term_name(m)] = value * weights[m]
        return out

    def _head_loss(self, method: str, student: dict[str, Any], teacher: dict[str, Any]) -> torch.Tensor:
        """``logit`` or ``ld`` between one branch of the student's head and the same branch of the teacher's."""
        if method == "logit":
            return losses.logit_kd(student["scores"], teacher["scores"], self.opts.temperature)
        return losses.localization_kd(
            student["boxes"],
            teacher["boxes"],
            losses.teacher_confidence(teacher["scores"]),
            self.reg_max,
            self.opts.temperature,
        )

    def _feature_loss(
        self, method: str, s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], weight: torch.Tensor
    ) -> torch.Tensor:
        """A feature method's loss summed over the levels that feed ``Detect`` (as Ultralytics sums ``loss_sl2``)."""
        adapters = self.adapters[method]
        total = s_feats[0].new_zeros((), dtype=torch.float32)
        if method == "sl2":
            scores = weight.split([f.shape[-2] * f.shape[-1] for f in t_feats], dim=-1)
        for i, (s, t) in enumerate(zip(s_feats, t_feats)):
            if s.shape[-2:] != t.shape[-2:]:
                raise ModelError(
                    f"feature level {i}: student map {tuple(s.shape[-2:])} vs teacher "
                    f"{tuple(t.shape[-2:])}; teacher and student need the same strides"
                )
            mapped = adapters[i](s)
            if method == "cwd":
                total = total + losses.channel_wise_kd(mapped, t, self.opts.cwd_temperature)
            elif method == "mgd":
                total = total + losses.masked_generative_kd(mapped, t)
            else:
                total = total + losses.score_weighted_l2(mapped, t, scores[i])
        return total
