"""A teacher that sees the batch at another size (``teacher_scale``): its outputs resampled onto the student's grid.

A detector trained on small objects may be far more accurate on an upsampled image (the bundled YOLOv8s: test
mAP50-95 0.614 at 256 px, 0.687 at 320, 0.709 at 384), so it can teach from there. Its maps at each level then have
``scale`` times the student's cells. Per level:

- class logits and features are resized to the student's cells (bilinear; cell centres line up);
- the DFL box distributions are resized as probabilities (a mix of distributions stays one), then re-binned: a
  distance of ``d`` teacher strides is ``d / scale`` student strides (the same stride in the student's pixels), so
  each teacher bin's mass is split linearly between the two student bins around ``d / scale``. The distances stay
  measured from the teacher's cell centres, which lie within a cell of the student's: an approximation, as the
  interpolation is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def teacher_input(img: torch.Tensor, scale: float, stride: int) -> torch.Tensor:
    """``img`` resized by ``scale`` (each side rounded to a multiple of ``stride``); ``img`` itself at scale 1."""
    h, w = img.shape[-2:]
    size = tuple(max(stride, round(s * scale / stride) * stride) for s in (h, w))
    if size == (h, w):
        return img
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False)


def rebin(reg_max: int, factor: float, device: torch.device | None = None) -> torch.Tensor:
    """``(reg_max, reg_max)`` matrix ``M``: ``p @ M`` moves a distribution over bins ``0..reg_max-1`` (distances in
    one stride) to distances ``factor`` times as long, splitting each bin's mass between its two nearest bins
    (the mean distance scales exactly unless it passes the last bin, where the mass is clamped)."""
    d = (torch.arange(reg_max, dtype=torch.float32, device=device) * factor).clamp(0, reg_max - 1)
    lo = d.floor().long()
    hi = (lo + 1).clamp(max=reg_max - 1)
    w_hi = d - lo.float()
    m = torch.zeros(reg_max, reg_max, device=device)
    rows = torch.arange(reg_max, device=device)
    m.index_put_((rows, lo), 1.0 - w_hi, accumulate=True)
    m.index_put_((rows, hi), w_hi, accumulate=True)
    return m


def _levels(x: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``(B, C, A)`` over the levels -> one ``(B, C, h, w)`` map per level."""
    parts = x.split([h * w for h, w in shapes], dim=-1)
    return [p.reshape(*p.shape[:2], h, w) for p, (h, w) in zip(parts, shapes)]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _branch(
    branch: dict[str, torch.Tensor],
    t_shapes: list[tuple[int, int]],
    s_shapes: list[tuple[int, int]],
    reg_max: int,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """One head branch's ``scores`` and ``boxes`` on the student's cells (boxes as ``T x log p`` of the re-binned
    softened distribution, so that ``softmax(boxes / T)`` in the LD loss gives that distribution back)."""
    scores = torch.cat([_resize(s, hw).flatten(2) for s, hw in zip(_levels(branch["scores"], t_shapes), s_shapes)], -1)
    out = {"scores": scores}
    if reg_max <= 1:  # distances regressed directly (YOLO26): scale them per axis, no distribution to re-bin
        boxes = []
        for b, (th, tw), (sh, sw) in zip(_levels(branch["boxes"], t_shapes), t_shapes, s_shapes):
            ratio = b.new_tensor([sw / tw, sh / th, sw / tw, sh / th]).view(1, 4, 1, 1)  # sides l, t, r, b
            boxes.append((_resize(b, (sh, sw)) * ratio).flatten(2))
        out["boxes"] = torch.cat(boxes, -1)
        return out
    boxes = []
    for b, (th, tw), (sh, sw) in zip(_levels(branch["boxes"], t_shapes), t_shapes, s_shapes):
        n = b.shape[0]
        p = F.softmax(b.reshape(n, 4, reg_max, th, tw) / temperature, dim=2).reshape(n, 4 * reg_max, th, tw)
        p = _resize(p, (sh, sw)).reshape(n, 4, reg_max, sh * sw)
        # sides l, t, r, b: l and r are horizontal (width ratio), t and b vertical (height ratio)
        mx, my = rebin(reg_max, sw / tw, b.device), rebin(reg_max, sh / th, b.device)
        p = torch.stack([torch.einsum("nra,rq->nqa", p[:, k], mx if k in (0, 2) else my) for k in range(4)], 1)
        boxes.append((p.clamp_min(1e-12).log() * temperature).reshape(n, 4 * reg_max, sh * sw))
    out["boxes"] = torch.cat(boxes, -1)
    return out


def to_student_grid(
    teacher: dict[str, Any], s_shapes: list[tuple[int, int]], reg_max: int, temperature: float
) -> dict[str, Any]:
    """The teacher's outputs (:class:`~.teacher.Teacher`'s dict) at its own size, resampled to the student's cells.

    Args:
        teacher: ``scores``, ``boxes``, ``feats`` and ``one2one`` of the teacher's forward pass.
        s_shapes: The student's ``(h, w)`` per level, from its features.
        reg_max: DFL bins per box side (1: distances regressed directly).
        temperature: The LD temperature (see :func:`_branch`).
    """
    t_shapes = [tuple(f.shape[-2:]) for f in teacher["feats"]]
    if t_shapes == s_shapes:
        return teacher
    out = _branch(teacher, t_shapes, s_shapes, reg_max, temperature)
    out["feats"] = [_resize(f, hw) for f, hw in zip(teacher["feats"], s_shapes)]
    o2o = teacher.get("one2one")
    out["one2one"] = None if o2o is None else _branch(o2o, t_shapes, s_shapes, reg_max, temperature)
    return out
