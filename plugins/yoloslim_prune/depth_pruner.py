"""Depth pruning: remove the least important bottleneck blocks inside C2f/C3k2 repeats.

A C2f-style block computes ``cv2(cat([a, b, m0(b), m1(m0(b)), ...]))``. Removing inner block ``k``
drops its output slice from ``cv2``'s input and feeds block ``k+1`` from block ``k-1`` directly, so
what remains is a plain Ultralytics block with a shorter ``m`` and a narrower ``cv2`` (no custom class
is needed for the result). A block can go when its input and output widths are equal (or it is the
last of its chain), which holds for every block of an unpruned model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from ultralytics.nn.modules import C2f

from yoloslim import ModelError, RecipeError, SplitC2f

from .channel_pruner import example_size, gflops

LOGGER = logging.getLogger("yoloslim.plugin.prune")

DEPTH_IMPORTANCES = ("loss", "l1", "l2", "bn")


@dataclass
class Block:
    """One removable inner block: ``owner.m[index]``, its name, and its widths in the running model."""

    name: str
    owner: nn.Module
    module: nn.Module
    in_channels: int
    out_channels: int

    @property
    def index(self) -> int:
        """Current position of the block in its owner's ``m`` (earlier removals shift it)."""
        return next(i for i, m in enumerate(self.owner.m) if m is self.module)


def _chains(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (C2f, SplitC2f)) and len(m.m) > 0]


def _widths(model: nn.Module, imgsz: int) -> dict[int, tuple[int, int]]:
    """Input and output channels of every inner block, from one forward pass (they change under channel pruning)."""
    widths: dict[int, tuple[int, int]] = {}
    hooks = []
    for _, owner in _chains(model):
        for block in owner.m:
            hooks.append(
                block.register_forward_hook(
                    lambda mod, inp, out: widths.__setitem__(id(mod), (inp[0].shape[1], out.shape[1]))
                )
            )
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 3, imgsz, imgsz))
    finally:
        for h in hooks:
            h.remove()
    return widths


def removable_blocks(model: nn.Module, imgsz: int = 64) -> list[Block]:
    """Inner blocks of every C2f/C3k2 that can be removed without breaking the chain."""
    widths = _widths(model, imgsz)
    blocks = []
    for name, owner in _chains(model):
        for i, block in enumerate(owner.m):
            cin, cout = widths[id(block)]
            if cin == cout or i == len(owner.m) - 1:
                blocks.append(Block(f"{name}.m.{i}", owner, block, cin, cout))
    return blocks


def _concat_slices(owner: nn.Module, widths: dict[int, tuple[int, int]]) -> list[int]:
    if isinstance(owner, SplitC2f):
        head = [owner.cv0.conv.out_channels, owner.cv1.conv.out_channels]
    else:
        head = [owner.cv1.conv.out_channels // 2] * 2
    return head + [widths[id(b)][1] for b in owner.m]


def remove_block(model: nn.Module, block: Block, imgsz: int = 64) -> None:
    """Remove ``block`` from its owner in place: drop it from ``m`` and its slice from ``cv2``'s input."""
    widths = _widths(model, imgsz)
    owner = block.owner
    sizes = _concat_slices(owner, widths)
    index = block.index
    start = sum(sizes[: 2 + index])
    stop = start + sizes[2 + index]
    conv = owner.cv2.conv
    keep = [c for c in range(conv.in_channels) if not start <= c < stop]
    conv.weight = nn.Parameter(conv.weight.data[:, keep].clone())
    conv.in_channels = len(keep)
    owner.m = nn.ModuleList(b for i, b in enumerate(owner.m) if i != index)
    if hasattr(owner, "n"):
        owner.n = len(owner.m)


def _magnitude(block: nn.Module, p: int) -> float:
    weights = [m.weight.detach() for m in block.modules() if isinstance(m, nn.Conv2d)]
    return float(torch.cat([w.abs().pow(p).flatten() for w in weights]).mean()) if weights else 0.0


def _bn_scale(block: nn.Module) -> float:
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    return float(bns[-1].weight.detach().abs().mean()) if bns else 0.0


def block_scores(
    model: nn.Module, blocks: list[Block], importance: str, loss: Callable[[nn.Module], float] | None = None
) -> list[float]:
    """Importance of each block (higher = keep): the loss increase when it is bypassed, or a weight statistic."""
    if importance == "loss":
        if loss is None:
            raise RecipeError("depth importance 'loss' needs calibration data (the stage's dataset)")
        base = loss(model)
        scores = []
        for b in blocks:
            index = b.index
            b.owner.m[index] = _Bypass(b.module, b.in_channels != b.out_channels)
            try:
                scores.append(loss(model) - base)
            finally:
                b.owner.m[index] = b.module
        return scores
    if importance in ("l1", "l2"):
        return [_magnitude(b.module, 1 if importance == "l1" else 2) for b in blocks]
    if importance == "bn":
        return [_bn_scale(b.module) for b in blocks]
    raise RecipeError(f"depth importance '{importance}' is unknown; use one of {list(DEPTH_IMPORTANCES)}")


class _Bypass(nn.Module):
    """Stands in for a block while its removal is scored: identity, or zeros for a last block of another width."""

    def __init__(self, block: nn.Module, zero: bool) -> None:
        super().__init__()
        self.zero = zero
        self.out_channels = next(m for m in reversed(list(block.modules())) if isinstance(m, nn.Conv2d)).out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.zero:
            return x.new_zeros(x.shape[0], self.out_channels, *x.shape[2:])
        return x


def prune_depth(
    model: nn.Module,
    ratio: float | None = None,
    target_macs: float | None = None,
    importance: str = "loss",
    imgsz: int = 320,
    loss: Callable[[nn.Module], float] | None = None,
) -> list[str]:
    """Remove the least important inner blocks of C2f/C3k2 repeats, in place.

    Args:
        model: An Ultralytics ``DetectionModel``.
        ratio: Fraction of the removable blocks to remove (rounded to the nearest count).
        target_macs: Instead of ``ratio``: remove blocks until MACs are at most this fraction of the current MACs.
        importance: ``loss`` (detection-loss increase when the block is bypassed; needs ``loss``), ``l1``/``l2``
            (mean weight magnitude) or ``bn`` (mean BatchNorm scale of its last layer).
        imgsz: Image size MACs are counted at.
        loss: Returns the model's mean loss on calibration batches.

    Returns:
        Names of the removed blocks (e.g. ``model.2.m.0``), least important first.

    Raises:
        RecipeError: On a bad option combination, or a MACs target block removal cannot reach.
        ModelError: If the model has no C2f/C3k2 blocks to remove.
    """
    if (ratio is None) == (target_macs is None):
        raise RecipeError("depth pruning needs exactly one of 'ratio' and 'target_macs'")
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise RecipeError(f"ratio must be in [0, 1], got {ratio}")
    blocks = removable_blocks(model)
    if not blocks:
        raise ModelError(f"{type(model).__name__} has no removable C2f/C3k2 inner blocks; depth pruning needs them")
    scores = block_scores(model, blocks, importance, loss)
    order = [b for _, b in sorted(zip(scores, blocks), key=lambda t: t[0])]
    size = example_size(imgsz)
    before = gflops(model, size)
    removed: list[str] = []
    if ratio is not None:
        chosen = order[: round(ratio * len(blocks))]
        for b in chosen:
            remove_block(model, b)
        removed = [b.name for b in chosen]
    else:
        goal = before * target_macs
        for b in order:
            if gflops(model, size) <= goal:
                break
            remove_block(model, b)
            removed.append(b.name)
        if gflops(model, size) > goal * 1.0001:
            raise RecipeError(
                f"target_macs {target_macs} is not reachable by removing blocks (all {len(blocks)} removed keeps "
                f"{gflops(model, size) / before:.3f}); use method 'channel' or a higher target_macs"
            )
    LOGGER.info(
        "depth pruning (%s): removed %d of %d blocks %s; GFLOPs %.3f -> %.3f",
        importance,
        len(removed),
        len(blocks),
        removed,
        before,
        gflops(model, size),
    )
    return removed
