"""Network slimming (Liu et al. 2017, https://arxiv.org/abs/1708.06519) as the yoloslim stage type ``slim``.

While the stage fine-tunes, an L1 penalty drives the BatchNorm scales (gammas) of unneeded channels toward zero;
when training is over, the channels with the smallest |gamma| across the whole network are removed::

    yoloslim slim best.pt --data data.yaml --out slim.pt --epochs 30 --ratio 0.3 --sparsity 1e-4

docs/writing-a-plugin.md in the yoloslim repository walks through this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

import yoloslim
from yoloslim import Measurement, SlimContext, Stage, StageType, hookimpl, option

_STATE = "slim"  # this plugin's key in ctx.state: {stage name: "kept/total" BN channels}


@dataclass(frozen=True)
class SlimOptions:
    """The options of a ``slim`` stage: recipe keys, ``yoloslim slim`` flags, help and checks, declared once."""

    ratio: float = option(0.3, help="fraction of the BatchNorm channels removed after training", ge=0.0, lt=1.0)
    sparsity: float = option(1e-4, help="L1 weight on the BatchNorm gammas while fine-tuning", ge=0.0)

    def check(self, epochs: int) -> None:
        """Refuse a sparsity that could never act: it is a training loss term."""
        if self.sparsity > 0 and epochs == 0:
            raise ValueError("'sparsity' acts during training; give 'epochs' >= 1 or set 'sparsity' to 0")


STAGE_TYPE = StageType(
    "slim",
    options=SlimOptions,
    accepts_training=True,
    default_epochs=10,
    epochs_help="fine-tuning epochs with the L1 penalty, before the channels are removed",
    train_defaults={"warmup_epochs": 0},  # fine-tuning a trained model: no warm-up unless the user sets one
    help="network slimming: L1 on the BatchNorm gammas while fine-tuning, then remove the smallest-|gamma| channels",
)


def _options(ctx: SlimContext) -> SlimOptions | None:
    """The current stage's options if it is a ``slim`` stage: training hooks fire in every training stage."""
    return ctx.stage.options if ctx.stage is not None and ctx.stage.type == "slim" else None


def bn_channels(model: nn.Module) -> int:
    """The number of BatchNorm channels in ``model``."""
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare the ``slim`` stage type (and with it the ``yoloslim slim`` command)."""
    return [STAGE_TYPE]


@hookimpl
def yoloslim_transform_model(model: nn.Module, stage: Stage) -> None:
    """Refuse a model Torch-Pruning cannot slim now, before training rather than after; the model stays as it is."""
    if stage.type == "slim":
        yoloslim.check_prunable(model)


@hookimpl
def yoloslim_extra_loss(model: nn.Module, ctx: SlimContext) -> dict[str, torch.Tensor] | None:
    """The L1 penalty on every BatchNorm gamma, logged as ``train/bn_l1``."""
    opts = _options(ctx)
    if opts is None or opts.sparsity == 0:
        return None
    # A scalar on the scale of one per-image loss item (like box/cls/dfl): the core multiplies it by the batch size,
    # as Ultralytics does its own terms, so `sparsity` weighs the same against the detection loss at any batch size.
    l1 = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return {"bn_l1": opts.sparsity * l1}


@hookimpl
def yoloslim_finalize_model(model: nn.Module, stage: Stage, ctx: SlimContext) -> nn.Module | None:
    """Remove the ``ratio`` of BatchNorm channels with the smallest |gamma|, ranked across the whole network.

    ``model`` is the fine-tuning's best model (float32, CPU); training's own files keep the un-slimmed one.
    """
    if stage.type != "slim":
        return None
    before = bn_channels(model)
    yoloslim.make_prunable(model)  # C2f/C3k2/C2PSA split one conv's output in two; make each half its own conv
    model.eval().requires_grad_(True)  # Torch-Pruning traces the dependency graph through autograd
    pruner = tp.pruner.MetaPruner(
        model,
        torch.zeros(1, 3, ctx.imgsz, ctx.imgsz),
        importance=tp.importance.BNScaleImportance(normalizer=None),  # raw |gamma|: one threshold for all layers
        pruning_ratio=stage.options.ratio,
        global_pruning=True,
        max_pruning_ratio=0.9,  # no layer loses all its channels
        ignored_layers=yoloslim.prune_ignored_layers(model),  # prediction convs, DFL, attention
        output_transform=yoloslim.raw_head_outputs,
    )
    pruner.step()
    model.requires_grad_(False)
    after = bn_channels(model)
    ctx.state.setdefault(_STATE, {})[stage.name] = f"{after}/{before}"
    ctx.logger.info("network slimming: kept %d of %d BatchNorm channels", after, before)
    return model


@hookimpl
def yoloslim_report_columns(measurement: Measurement, ctx: SlimContext) -> dict[str, Any] | None:
    """``BN channels`` (kept/total) on the rows of ``slim`` stages; other rows print '-'."""
    kept = ctx.state.get(_STATE, {}).get(measurement.stage)  # the name of the stage that made the row, or None
    return None if kept is None else {"BN channels": kept}
