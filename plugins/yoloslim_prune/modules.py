"""Prunable replacements for Ultralytics blocks whose forward splits one convolution's output in two.

``C2f`` and ``C3k2`` run ``cv1(x).chunk(2, 1)`` and ``C2PSA`` runs ``cv1(x).split((c, c), 1)``: both
halves come from one convolution, and the split sizes are fixed attributes, so removing channels
of that convolution breaks the forward pass. The replacements below compute each half with its own
1x1 convolution (the rows of the original ``cv1``, so outputs are identical), which Torch-Pruning's
dependency graph prunes like any other convolution.

They live here, at a stable import path, because a pruned checkpoint pickles their class by
``yoloslim_prune.modules.<name>``: ``YOLO("pruned.pt")`` then loads in any process that has
yoloslim installed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from ultralytics.nn.modules import C2f, C2PSA

# Attributes Ultralytics' parse_model sets on every layer of a DetectionModel (forward routing, summaries).
_LAYER_ATTRS = ("i", "f", "type", "np")


def split_conv(conv: nn.Module, rows: slice) -> nn.Module:
    """Return a copy of an Ultralytics ``Conv`` (conv, bn, act) keeping only the output channels ``rows``.

    The copy keeps everything else of the original (BN ``eps``/``momentum``, activation, stride,
    padding), so its output equals the matching channels of the original's output.
    """
    new = copy.deepcopy(conv)
    w = conv.conv.weight.data[rows].clone()
    new.conv.weight = nn.Parameter(w)
    new.conv.out_channels = w.shape[0]
    if conv.conv.bias is not None:
        new.conv.bias = nn.Parameter(conv.conv.bias.data[rows].clone())
    bn, src = getattr(new, "bn", None), getattr(conv, "bn", None)
    if isinstance(bn, nn.BatchNorm2d):
        bn.weight = nn.Parameter(src.weight.data[rows].clone())
        bn.bias = nn.Parameter(src.bias.data[rows].clone())
        bn.running_mean = src.running_mean[rows].clone()
        bn.running_var = src.running_var[rows].clone()
        bn.num_features = w.shape[0]
    return new


class _SplitBlock(nn.Module):
    """Common part of the split blocks: ``cv1`` split into ``cv0``/``cv1``, ``cv2`` and ``m`` shared, layer attributes copied."""

    def __init__(self, src: nn.Module) -> None:
        """Build from ``src``, sharing its ``m`` and ``cv2``."""
        super().__init__()
        c = src.c
        self.cv0 = split_conv(src.cv1, slice(0, c))
        self.cv1 = split_conv(src.cv1, slice(c, 2 * c))
        self.cv2 = src.cv2
        self.m = src.m
        self.source_type = type(src).__name__
        for name in _LAYER_ATTRS:
            if hasattr(src, name):
                setattr(self, name, getattr(src, name))


class SplitC2f(_SplitBlock):
    """``C2f``/``C3k2`` (built from one: ``SplitC2f(c2f)``) with the halves of ``cv1`` as convolutions ``cv0``, ``cv1``.

    ``forward`` computes what the original does: ``cv2(cat([a, b, m0(b), m1(m0(b)), ...]))``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SplitC2PSA(_SplitBlock):
    """``C2PSA`` (built from one: ``SplitC2PSA(c2psa)``) with ``cv1`` split into ``cv0`` (bypass) and ``cv1`` (attention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block."""
        return self.cv2(torch.cat((self.cv0(x), self.m(self.cv1(x))), 1))


def make_prunable(model: nn.Module) -> int:
    """Replace every ``C2f``/``C3k2``/``C2PSA`` inside ``model`` by its split form, in place.

    Returns:
        The number of blocks replaced.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, C2f) and type(child).forward is C2f.forward:
                setattr(parent, name, SplitC2f(child))
                count += 1
            elif isinstance(child, C2PSA):
                setattr(parent, name, SplitC2PSA(child))
                count += 1
    return count
