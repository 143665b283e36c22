"""Quantization-aware training: fake quantization that simulates exactly what the PTQ graph computes.

- BatchNorm is folded into its convolution first (Ultralytics' own ``fuse``), so the weights that are trained are
  the weights the INT8 graph holds; no BatchNorm statistics drift during the short fine-tune.
- Every quantizable convolution (all but the DFL's fixed one) is wrapped in :class:`FakeQuantConv`: weights fake-
  quantized per output channel, symmetric INT8 (scale ``max|w| / 127``, recomputed every step, as ONNX Runtime
  computes it at export); the input and the output activation per tensor, asymmetric UINT8 (the ``cpu`` target's
  layout), with a straight-through gradient.
- Activation ranges are calibrated first on training images (min/max), then either frozen or learned
  (``torch._fake_quantize_learnable_per_tensor_affine``, LSQ-style gradients for scale and zero point).
- :func:`strip` returns a plain Ultralytics model (wrappers replaced by their convolutions) carrying the ranges
  as ``model.yoloslim_qat_ranges`` (module name -> input and output range), which the export hands to the PTQ
  quantizer in place of calibrated ranges, so both runtimes get the same QDQ graph as PTQ.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import STEM_MAX_CHANNELS

QMIN, QMAX = 0, 255  # uint8 activations
WMAX = 127  # symmetric int8 weights (-127..127)


class FakeQuantConv(nn.Module):
    """A convolution with fake-quantized weights (per channel) and input/output activations (per tensor)."""

    def __init__(self, conv: nn.Conv2d, learn_ranges: bool = False) -> None:
        """Wrap ``conv`` (its weights and bias are trained in place)."""
        super().__init__()
        self.conv = conv
        self.learn_ranges = learn_ranges
        self.observing = True
        for side in ("in", "out"):
            self.register_buffer(f"{side}_min", torch.tensor(float("inf")))
            self.register_buffer(f"{side}_max", torch.tensor(float("-inf")))
            for what, value in (("scale", 1.0), ("zero", 0.0)):
                # Frozen ranges are buffers: trainers switch every float *parameter* to requires_grad=True.
                # Shape (1,): the learnable fake-quant op indexes them.
                if learn_ranges:
                    self.register_parameter(f"{side}_{what}", nn.Parameter(torch.tensor([value])))
                else:
                    self.register_buffer(f"{side}_{what}", torch.tensor([value]))

    def freeze_observers(self) -> None:
        """End calibration: set scales and zero points from the observed ranges."""
        for side in ("in", "out"):
            lo = min(float(getattr(self, f"{side}_min")), 0.0)
            hi = max(float(getattr(self, f"{side}_max")), 0.0)
            scale = max((hi - lo) / (QMAX - QMIN), 1e-8)
            getattr(self, f"{side}_scale").data.fill_(scale)
            getattr(self, f"{side}_zero").data.fill_(float(np.clip(round(QMIN - lo / scale), QMIN, QMAX)))
        self.observing = False

    def _fq(self, x: torch.Tensor, side: str) -> torch.Tensor:
        scale, zero = getattr(self, f"{side}_scale"), getattr(self, f"{side}_zero")
        if self.learn_ranges:
            return torch._fake_quantize_learnable_per_tensor_affine(x, scale.abs() + 1e-8, zero, QMIN, QMAX, 1.0)
        return torch.fake_quantize_per_tensor_affine(x, float(scale), int(round(float(zero))), QMIN, QMAX)

    def _observe(self, x: torch.Tensor, side: str) -> None:
        with torch.no_grad():
            lo, hi = getattr(self, f"{side}_min"), getattr(self, f"{side}_max")
            lo.copy_(torch.minimum(lo, x.min().float()))
            hi.copy_(torch.maximum(hi, x.max().float()))

    def quantized_weight(self) -> torch.Tensor:
        """The weights as the INT8 graph holds them (dequantized)."""
        w = self.conv.weight
        scale = (w.detach().abs().flatten(1).amax(1) / WMAX).clamp_min(1e-12).float()
        return torch.fake_quantize_per_channel_affine(
            w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -WMAX, WMAX
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize input and weights, convolve, quantize the output (observe ranges while calibrating)."""
        if self.observing:
            self._observe(x, "in")
            y = self.conv(x)
            self._observe(y, "out")
            return y
        c = self.conv
        y = F.conv2d(self._fq(x, "in"), self.quantized_weight(), c.bias, c.stride, c.padding, c.dilation, c.groups)
        return self._fq(y, "out")

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Float ranges ``(min, max)`` of the input and output quantizers."""
        out = {}
        for side in ("in", "out"):
            scale = abs(float(getattr(self, f"{side}_scale").detach())) + 1e-8
            zero = float(np.clip(round(float(getattr(self, f"{side}_zero").detach())), QMIN, QMAX))
            out[side] = ((QMIN - zero) * scale, (QMAX - zero) * scale)
        return out


def _is_dfl(name: str) -> bool:
    return name.split(".")[-1] == "dfl" or ".dfl" in name


def insert(model: nn.Module, learn_ranges: bool = False, skip_stem: bool = False) -> nn.Module:
    """Fold BatchNorm and wrap every quantizable convolution of ``model`` in place; returns ``model``.

    ``skip_stem`` leaves the image stem float, as the ``cpu`` target exports it (the same rule as
    :func:`yoloslim_quant.graph.stem_layers`).

    Returns:
        The model, fused, with :class:`FakeQuantConv` wrappers (observing until :func:`calibrate`).
    """
    if hasattr(model, "fuse"):
        model.fuse(verbose=False)
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
        and not isinstance(m, FakeQuantConv)
        and not _is_dfl(name)
        and not (skip_stem and m.groups == 1 and m.in_channels <= STEM_MAX_CHANNELS)
    ]
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, FakeQuantConv):
            continue
        setattr(parent, attr, FakeQuantConv(conv, learn_ranges))
    return model


def fake_quant_modules(model: nn.Module) -> list[FakeQuantConv]:
    """The model's fake-quant wrappers, in module order."""
    return [m for m in model.modules() if isinstance(m, FakeQuantConv)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Observe activation ranges on ``batches`` (eval mode), then freeze them into scales; returns images seen."""
    was_training = model.training
    model.eval()
    seen = 0
    for x in batches:
        model(x)
        seen += len(x)
    for m in fake_quant_modules(model):
        m.freeze_observers()
    model.train(was_training)
    return seen


def strip(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without fake quantization, carrying the ranges as ``yoloslim_qat_ranges``."""
    model = copy.deepcopy(model)
    ranges: dict[str, dict[str, Any]] = {}
    for name, m in list(model.named_modules()):
        if isinstance(m, FakeQuantConv):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if not m.observing:
                ranges[name] = m.ranges()
            setattr(parent, attr, m.conv)
    model.yoloslim_qat_ranges = ranges
    return model


def onnx_ranges(model: nn.Module, onnx_model: Any) -> dict[str, tuple[float, float]]:
    """Map the stripped model's QAT ranges onto the tensors of an ONNX export of it (by matching conv weights).

    Returns:
        ONNX tensor name -> ``(min, max)``: each quantizable conv's input and output.
    """
    from onnx import numpy_helper

    from .graph import quantizable_layers

    ranges = getattr(model, "yoloslim_qat_ranges", None) or {}
    if not ranges:
        return {}
    weights = {name: model.get_submodule(name).weight.detach().float().numpy() for name in ranges}
    inits = {t.name: t for t in onnx_model.graph.initializer}
    nodes = {n.name: n for n in onnx_model.graph.node}
    out: dict[str, tuple[float, float]] = {}
    for layer in quantizable_layers(onnx_model):
        node = nodes[layer]
        w = numpy_helper.to_array(inits[node.input[1]])
        match = [n for n, tw in weights.items() if tw.shape == w.shape and np.allclose(tw, w, atol=1e-3, rtol=1e-2)]
        if len(match) != 1:
            continue
        r = ranges[match[0]]
        for tensor, (lo, hi) in ((node.input[0], r["in"]), (node.output[0], r["out"])):
            old = out.get(tensor)  # a tensor feeding several convs gets the union of their ranges
            out[tensor] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    return out
