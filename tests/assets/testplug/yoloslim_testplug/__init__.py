"""A third-party plugin used by the tests: records every hook call and adds an L2 loss term.

Events go, one per line, to the file named by TESTPLUG_LOG (if set).
"""

import os
from dataclasses import dataclass

from yoloslim import StageType, hookimpl, option

WEIGHT = float(os.environ.get("TESTPLUG_WEIGHT", "0.01"))


def _log(event, ctx=None):
    path = os.environ.get("TESTPLUG_LOG")
    if path:
        stage = ctx.stage.type if ctx is not None and ctx.stage is not None else "-"
        with open(path, "a") as f:
            f.write(f"{event} {stage}\n")


@dataclass(frozen=True)
class ShrinkOptions:
    factor: float = option(1.0, help="multiply weights by this before training")


@hookimpl
def yoloslim_stage_types():
    return [StageType("l2shrink", options=ShrinkOptions, accepts_training=True, default_epochs=1)]


@hookimpl
def yoloslim_transform_model(model, stage, ctx):
    if stage.type != "l2shrink":
        return None
    _log("transform", ctx)
    for p in model.parameters():
        p.data.mul_(stage.options.factor)
    return model


@hookimpl
def yoloslim_train_start(trainer, ctx):
    _log("train_start", ctx)


@hookimpl
def yoloslim_batch_start(trainer, ctx):
    _log("batch_start", ctx)


@hookimpl
def yoloslim_extra_loss(batch, preds, model, ctx):
    _log("extra_loss", ctx)
    first = next(p for p in model.parameters() if p.requires_grad)
    return {"testplug_l2": WEIGHT * first.pow(2).sum()}


@hookimpl
def yoloslim_after_optimizer_step(trainer, ctx):
    _log("after_optimizer_step", ctx)


@hookimpl
def yoloslim_epoch_end(trainer, ctx):
    _log("epoch_end", ctx)


@hookimpl
def yoloslim_train_end(trainer, ctx):
    _log("train_end", ctx)


@hookimpl
def yoloslim_model_to_save(model, ctx):
    _log("model_to_save", ctx)


@hookimpl
def yoloslim_report_columns(measurement, ctx):
    return {"testplug_seen": measurement.name}
