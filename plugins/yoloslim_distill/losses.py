"""The distillation losses, as functions of student and teacher tensors (no model, no state).

Head outputs are Ultralytics' raw training outputs of ``Detect``: ``scores`` ``(B, nc, A)`` class logits and
``boxes`` ``(B, 4 * reg_max, A)`` DFL bin logits over the ``A`` anchors of all levels; features are the
``(B, C, H, W)`` maps that feed ``Detect``. Every loss is zero when the student's tensors equal the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_confidence(scores: torch.Tensor) -> torch.Tensor:
    """Per-anchor confidence of the teacher: the largest class probability, ``(B, A)``."""
    return scores.float().sigmoid().amax(dim=1)


def logit_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class-score distillation: binary KL between sigmoid(teacher / T) and sigmoid(student / T), times T².

    Detection scores are independent sigmoids, not a softmax, so each (class, anchor) is a Bernoulli. The sum
    over classes and anchors is divided by the teacher's total confidence (about its number of detected objects),
    the normaliser Ultralytics uses for its own class loss, so the term does not shrink with the image size.
    """
    s, t = student.float() / temperature, teacher.float() / temperature
    p = t.sigmoid()
    kl = F.binary_cross_entropy_with_logits(s, p, reduction="none") - F.binary_cross_entropy_with_logits(
        t, p, reduction="none"
    )
    return kl.sum() * temperature**2 / teacher_confidence(teacher).sum().clamp(min=1.0)


def localization_kd(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor, reg_max: int, temperature: float
) -> torch.Tensor:
    """Localization distillation (LD) on the DFL bins: KL of the softened bin distributions of each box side.

    Args:
        student: Student box logits ``(B, 4 * reg_max, A)``.
        teacher: Teacher box logits, same shape.
        weight: Per-anchor weight ``(B, A)`` (the teacher's confidence: distil boxes where there are objects).
        reg_max: DFL bins per side.
        temperature: Softening temperature.
    """
    b, _, a = student.shape
    s = student.float().view(b, 4, reg_max, a) / temperature
    t = teacher.float().view(b, 4, reg_max, a) / temperature
    kl = (F.softmax(t, dim=2) * (F.log_softmax(t, dim=2) - F.log_softmax(s, dim=2))).sum(dim=2).mean(dim=1)
    return (kl * weight).sum() * temperature**2 / weight.sum().clamp(min=1e-6)


def channel_wise_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Channel-wise distillation (CWD): KL of each channel's spatial softmax, averaged over channels, times T².

    ``student`` must already have the teacher's width (through an adapter).
    """
    n, c = teacher.shape[:2]
    s = student.float().reshape(n * c, -1) / temperature
    t = teacher.float().reshape(n * c, -1) / temperature
    kl = (F.softmax(t, dim=1) * (F.log_softmax(t, dim=1) - F.log_softmax(s, dim=1))).sum(dim=1)
    return kl.mean() * temperature**2


def masked_generative_kd(generated: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Masked generative distillation (MGD): mean squared error of the generated feature against the teacher's.

    The masking and generation happen in :class:`yoloslim_distill.adapters.MGDGenerator`.
    """
    return F.mse_loss(generated.float(), teacher.float())


def score_weighted_l2(student: torch.Tensor, teacher: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Score-weighted L2 (Ultralytics' ``loss_sl2``): squared error weighted by the teacher's confidence per position.

    Args:
        student: Student feature at the teacher's width ``(B, C, H, W)``.
        teacher: Teacher feature ``(B, C, H, W)``.
        score: Teacher confidence at each position of this level ``(B, H * W)``.
    """
    n, c = teacher.shape[:2]
    mse = (student.float().reshape(n, c, -1) - teacher.float().reshape(n, c, -1)).square()
    w = score.reshape(n, 1, -1)
    return (mse * w).sum() / (w.sum() * c + 1e-9)
