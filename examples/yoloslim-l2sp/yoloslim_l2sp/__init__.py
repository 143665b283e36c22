"""L2-SP: while fine-tuning, pull the weights toward where they started (a yoloslim plugin)."""

from yoloslim import hookimpl

WEIGHT = 1e-3


@hookimpl
def yoloslim_train_start(trainer, ctx):
    ctx.state["l2sp_start"] = [p.detach().clone() for p in trainer.model.parameters()]


@hookimpl
def yoloslim_extra_loss(model, ctx):
    start = ctx.state.get("l2sp_start")
    if start is None:
        return None
    drift = sum((p - p0).pow(2).sum() for p, p0 in zip(model.parameters(), start))
    return {"l2sp": WEIGHT * drift}
