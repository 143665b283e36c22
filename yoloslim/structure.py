"""What an Ultralytics detection model allows a pruner to change: prunable block replacements and the layers to keep.

Every structured-pruning method needs the same rules, so they live in the core (public as ``yoloslim.make_prunable``,
``yoloslim.prune_ignored_layers``, ``yoloslim.check_prunable``, ``yoloslim.raw_head_outputs``):

- :func:`make_prunable` replaces the blocks whose forward splits one convolution's output in two (below);
- :func:`prune_ignored_layers` lists the layers whose output channels must not change: ``Detect``'s final box and
  class convolutions (their widths are 4 x reg_max and the class count), the DFL, and attention (its channels are
  reshaped into heads) -- pass them to Torch-Pruning as ``ignored_layers``;
- :func:`raw_head_outputs` is the ``output_transform`` that stops tracing at the head's raw outputs;
- :func:`check_prunable` names the first layer the dependency graph is not known to handle.

Prunable replacements for Ultralytics blocks whose forward splits one convolution's output in two:

``C2f`` and ``C3k2`` run ``cv1(x).chunk(2, 1)`` and ``C2PSA`` runs ``cv1(x).split((c, c), 1)``: both
halves come from one convolution, and the split sizes are fixed attributes, so removing channels
of that convolution breaks the forward pass. The replacements below compute each half with its own
1x1 convolution (the rows of the original ``cv1``, so outputs are identical), which Torch-Pruning's
dependency graph prunes like any other convolution.

They live here, at a stable import path, because a pruned checkpoint pickles their class by
``yoloslim.structure.<name>``: ``YOLO("pruned.pt")`` then loads in any process that has yoloslim installed, and
yoloslim's safe loader allows them (checkpoints of earlier versions name ``yoloslim_prune.modules.<name>``, which
is allowed as an alias).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from ultralytics.nn.modules import C2PSA, C3, DFL, SPPF, Bottleneck, C2f, Concat, Conv, Detect, DWConv
from ultralytics.nn.modules.block import Attention, C3k, PSABlock

from yoloslim.errors import ModelError

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
    """Common part of the split blocks: ``cv1`` split into ``cv0``/``cv1``; ``cv2``, ``m``, layer attributes kept."""

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
    """``C2PSA`` (built as ``SplitC2PSA(c2psa)``) with ``cv1`` split into ``cv0`` (bypass) and ``cv1`` (attention)."""

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


# Layer types the dependency graph handles correctly once split blocks are replaced (containers included).
SUPPORTED_LAYERS: tuple[type, ...] = (
    Conv,
    DWConv,
    Bottleneck,
    C3,
    C3k,
    SplitC2f,
    SplitC2PSA,
    PSABlock,
    Attention,
    SPPF,
    Concat,
    Detect,
    DFL,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.SiLU,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.Identity,
    nn.MaxPool2d,
    nn.Upsample,
    nn.Sequential,
    nn.ModuleList,
)

# Names under which earlier versions pickled the split blocks (the prune plugin's module).
LEGACY_NAMES = {SplitC2f: "yoloslim_prune.modules.SplitC2f", SplitC2PSA: "yoloslim_prune.modules.SplitC2PSA"}


def _supported(module: nn.Module) -> bool:
    if isinstance(module, Detect):
        return type(module) is Detect
    if isinstance(module, C2f):
        return type(module).forward is C2f.forward
    return isinstance(module, (*SUPPORTED_LAYERS, C2PSA))


def check_prunable(model: nn.Module) -> None:
    """Raise ModelError naming the first layer of ``model`` that dependency-aware channel pruning does not support.

    Only exact Ultralytics ``Detect`` heads are supported (not segmentation, pose, OBB or v10 heads).
    """
    from ultralytics.nn.tasks import DetectionModel

    for name, module in model.named_modules():
        if name == "" or isinstance(module, DetectionModel) or _supported(module):
            continue
        raise ModelError(
            f"layer '{name}' ({type(module).__name__}) is not supported by channel pruning; supported layers: "
            f"{', '.join(sorted({t.__name__ for t in SUPPORTED_LAYERS} | {'C2f', 'C3k2', 'C2PSA'}))}; "
            "use method 'magnitude' for this model, or one built from a YOLOv8/YOLO11/YOLO26 detect YAML"
        )


def prune_ignored_layers(model: nn.Module, prune_head: bool = True) -> list[nn.Module]:
    """Layers whose output channels must stay: prediction convs, DFL, attention (all of Detect without ``prune_head``).

    Pass them to Torch-Pruning's pruners as ``ignored_layers``; the inner convolutions of ``Detect``'s branches stay
    prunable when ``prune_head`` is true.
    """
    ignored: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, Detect):
            if not prune_head:
                ignored.append(module)
                continue
            for branch in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
                for seq in getattr(module, branch, None) or ():
                    ignored.append(seq[-1])
            ignored.append(module.dfl)
        elif isinstance(module, Attention):
            ignored.append(module)
    return ignored


def raw_head_outputs(out: Any) -> list[torch.Tensor]:
    """The raw prediction tensors of an eval-mode detection forward, without the decode and top-k post-processing.

    Use it as Torch-Pruning's ``output_transform``: tracing stops at the branch outputs, so YOLO26's end-to-end
    top-k/gather over anchors x classes does not enter the dependency graph (it breaks Torch-Pruning's concat
    bookkeeping for some class counts).
    """
    found: list[torch.Tensor] = []

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            found.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(out[1] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else out)
    return found
