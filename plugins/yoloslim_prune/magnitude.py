"""Unstructured magnitude pruning: masks, a cubic sparsity schedule, and sparsity of a model.

Zeroed weights do not make a dense runtime faster; what they buy is a smaller compressed file
(see :mod:`yoloslim_prune.storage`) and a starting point for sparse kernels.
"""

from __future__ import annotations

import torch
from torch import nn
from ultralytics.nn.modules import DFL

Masks = dict[str, torch.Tensor]
"""Parameter name -> bool mask of the weights to keep."""


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Convolution weights that unstructured pruning may zero, by parameter name (the fixed DFL conv is left out)."""
    skip = {id(m.conv) for m in model.modules() if isinstance(m, DFL)}
    return {
        f"{name}.weight" if name else "weight": m.weight
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and id(m) not in skip
    }


def magnitude_masks(model: nn.Module, sparsity: float, global_pruning: bool = False) -> Masks:
    """Masks that zero the ``sparsity`` fraction of smallest-magnitude convolution weights.

    Args:
        model: The model (not modified).
        sparsity: Fraction of weights to zero, in [0, 1).
        global_pruning: One threshold across all layers instead of ``sparsity`` within each layer.
    """
    weights = prunable_weights(model)
    if global_pruning:
        flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        k = int(round(sparsity * flat.numel()))
        if k == 0:
            return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        threshold = flat.kthvalue(k).values
        return {n: w.detach().abs() > threshold for n, w in weights.items()}
    masks = {}
    for n, w in weights.items():
        k = int(round(sparsity * w.numel()))
        mask = torch.ones(w.numel(), dtype=torch.bool)
        if k:
            mask[w.detach().abs().flatten().argsort()[:k]] = False
        masks[n] = mask.view_as(w)
    return masks


def masks_from_zeros(model: nn.Module) -> Masks:
    """Masks keeping the non-zero weights of every prunable layer that has zeros (how a pruned model is recognized)."""
    masks = {}
    for n, w in prunable_weights(model).items():
        mask = w.detach() != 0
        if not bool(mask.all()):
            masks[n] = mask
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked-out weights of ``model`` in place (names that ``model`` lacks are skipped)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params.get(name)
        if p is not None and p.shape == mask.shape:
            p.mul_(mask.to(p.device, p.dtype))


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights among the prunable convolution weights of ``model``."""
    weights = list(prunable_weights(model).values())
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, total)


def cubic_sparsity(epoch: int, start: int, end: int, final: float) -> float:
    """Target sparsity once 1-based ``epoch`` has ended (Zhu & Gupta 2017 cubic schedule).

    Sparsity rises from 0 before epoch ``start`` to ``final`` at the end of epoch ``end``:
    ``final * (1 - (1 - p) ** 3)`` with ``p = (epoch - start + 1) / (end - start + 1)`` clamped to [0, 1].
    """
    p = min(1.0, max(0.0, (epoch - start + 1) / (end - start + 1)))
    return final * (1.0 - (1.0 - p) ** 3)
