"""Dependency-aware channel pruning of Ultralytics detection models with Torch-Pruning.

The model's split blocks are first replaced by prunable equivalents (:mod:`yoloslim.structure`);
Torch-Pruning's dependency graph then removes whole channels consistently through residual adds,
``Concat``, ``SPPF`` and the inner convolutions of ``Detect``'s branches. What must stay intact is
ignored: the final box/class prediction convolutions, the DFL, and attention (its channels are
reshaped into heads).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from ultralytics.nn.modules import DFL

from yoloslim import RecipeError, check_prunable, make_prunable, prune_ignored_layers, raw_head_outputs, torch_counts

LOGGER = logging.getLogger("yoloslim.plugin.prune")

IMPORTANCES = ("l1", "l2", "bn", "taylor")


def make_importance(name: str) -> Any:
    """Return Torch-Pruning's group importance for ``name`` (l1, l2, bn, taylor)."""
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "bn":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise RecipeError(f"importance '{name}' is unknown; use one of {list(IMPORTANCES)}")


def gflops(model: nn.Module, imgsz: int) -> float:
    """GFLOPs (2 x MACs) of one batch-1 forward pass at ``imgsz``, counted as the report counts them."""
    training = model.training
    model.eval()
    try:
        return torch_counts(model, imgsz)[1]
    finally:
        model.train(training)


def example_size(imgsz: int) -> int:
    """Input size for tracing and MACs counting: ``imgsz`` clipped to [64, 128].

    Convolution MACs scale with the image area alike, so their ratios do not depend on the size; only
    attention's matrix products (YOLO11/26 C2PSA) grow faster, and they are a small share.
    """
    return max(64, min(128, int(math.ceil(imgsz / 32) * 32)))


def _search_ratio(
    macs_at: Callable[[float], float], target: float, max_ratio: float, iterations: int = 7
) -> float | None:
    """Smallest pruning ratio in (0, ``max_ratio``) whose MACs fraction ``macs_at(r)`` is <= ``target``, or None.

    Bisection to ``max_ratio / 2**iterations``; MACs fall monotonically with the ratio (not necessarily at
    ``max_ratio`` itself, where Torch-Pruning skips layers that would shrink to one channel).
    """
    lo, hi, found = 0.0, max_ratio, False
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if macs_at(mid) <= target:
            hi, found = mid, True
        else:
            lo = mid
    return hi if found else None


def prune_channels(
    model: nn.Module,
    ratio: float | None = None,
    target_macs: float | None = None,
    importance: str = "l2",
    global_pruning: bool = False,
    round_to: int | None = None,
    max_layer_ratio: float = 0.9,
    prune_head: bool = True,
    imgsz: int = 320,
    gradients: Callable[[nn.Module], None] | None = None,
    module_ms: dict[str, float] | None = None,
    capped: bool = False,
    choose_ratio: Callable[[Callable[[float], nn.Module]], float] | None = None,
) -> nn.Module:
    """Remove whole channels of an Ultralytics detection model, in place.

    Args:
        model: An Ultralytics ``DetectionModel`` (float32, CPU).
        ratio: Fraction of channels to remove from every prunable layer (uniform), or overall (global).
        target_macs: Instead of ``ratio``: prune until the model's MACs are at most this fraction of its current MACs.
        importance: Channel ranking: ``l1``/``l2`` weight magnitude, ``bn`` BatchNorm scale, ``taylor``
            first-order Taylor (|weight x gradient|; needs ``gradients``).
        global_pruning: Rank channels across layers instead of within each layer.
        round_to: Keep channel counts a multiple of this (fast kernels prefer multiples of 8).
        max_layer_ratio: No layer loses more than this fraction of its channels.
        prune_head: Prune the inner channels of Detect's branches (prediction convs and DFL always stay intact).
        imgsz: Image size the MACs are counted at.
        gradients: Called with the model to fill parameter gradients (for ``taylor``).
        module_ms: Measured milliseconds per module name of this (prunable) model in the deployment runtime: each
            group's importance is divided by the time one of its channels costs (latency-aware allocation; needs
            ``global_pruning``). See :mod:`yoloslim_prune.latency`.
        capped: Rank globally with yoloslim's allocator (every group capped at ``max_layer_ratio``, widths rounded to
            ``round_to``) instead of Torch-Pruning's; implied by ``module_ms``.
        choose_ratio: Instead of ``ratio`` or ``target_macs``: called with ``pruned(r)`` (a pruned copy of the model
            at ratio ``r``), returns the ratio to apply (e.g. a latency budget search).

    Returns:
        The same model object, pruned, in eval mode.

    Raises:
        RecipeError: On a bad option combination or an unreachable MACs target.
        ModelError: If the model holds a layer channel pruning does not support.
    """
    import torch_pruning as tp

    if sum(x is not None for x in (ratio, target_macs, choose_ratio)) != 1:
        raise RecipeError("channel pruning needs exactly one of 'ratio', 'target_macs' and a latency budget")
    capped = capped or module_ms is not None
    if capped and not global_pruning:
        raise RecipeError("capped/latency-aware allocation ranks channels across layers; set global_pruning true")
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise RecipeError(f"ratio must be in [0, 1), got {ratio}")
    if target_macs is not None and not 0.0 < target_macs <= 1.0:
        raise RecipeError(f"target_macs must be in (0, 1], got {target_macs}")
    if importance == "taylor" and gradients is None:
        raise RecipeError("importance 'taylor' needs calibration data (the stage's dataset)")
    check_prunable(model)
    make_prunable(model)
    model.eval()
    for p in model.parameters():
        if p.dtype.is_floating_point:
            p.requires_grad_(True)
    size = example_size(imgsz)
    before = gflops(model, size)
    if importance == "taylor":
        gradients(model)

    def prune(net: nn.Module, r: float) -> nn.Module:
        if r > 0 and capped:
            from .latency import prune_by_latency

            prune_by_latency(
                net,
                torch.zeros(1, 3, size, size),
                make_importance(importance),
                module_ms,
                r,
                max_layer_ratio,
                round_to,
                prune_ignored_layers(net, prune_head),
                raw_head_outputs,
            )
        elif r > 0:
            pruner = tp.pruner.MetaPruner(
                net,
                torch.zeros(1, 3, size, size),
                importance=make_importance(importance),
                pruning_ratio=r,
                max_pruning_ratio=max_layer_ratio,
                global_pruning=global_pruning,
                round_to=round_to,
                ignored_layers=prune_ignored_layers(net, prune_head),
                output_transform=raw_head_outputs,
            )
            pruner.step()
        return net

    def pruned(r: float) -> nn.Module:
        net = copy.deepcopy(model)
        for src, dst in zip(model.parameters(), net.parameters()):  # deepcopy drops .grad, which taylor reads
            dst.grad = None if src.grad is None else src.grad.clone()
        return prune(net, r)

    def trial(r: float) -> float:
        return gflops(pruned(r), size) / before

    if target_macs is not None:
        ratio = _search_ratio(trial, target_macs, max_layer_ratio)
        if ratio is None:
            raise RecipeError(
                f"target_macs {target_macs} is not reachable with max_layer_ratio {max_layer_ratio}; "
                "raise max_layer_ratio or target_macs"
            )
    if choose_ratio is not None:
        ratio = choose_ratio(pruned)
    prune(model, ratio)
    after = gflops(model, size)
    for p in model.parameters():
        p.grad = None
    for module in model.modules():
        if isinstance(module, DFL):
            module.conv.requires_grad_(False)
    LOGGER.info(
        "channel pruning (%s%s%s): GFLOPs %.3f -> %.3f (%.1f%%) at %d px",
        importance,
        ", global" if global_pruning else "",
        ", latency-aware" if module_ms is not None else ", capped" if capped else "",
        before,
        after,
        100 * after / before,
        size,
    )
    return model
