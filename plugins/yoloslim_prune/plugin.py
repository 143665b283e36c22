"""The pruning plugin's hook implementations: the ``prune`` stage and its training-loop behaviour.

- ``yoloslim_transform_model`` prunes (channels, blocks, or weights one-shot); with
  ``iterative_steps: N`` it runs N-1 rounds of prune -> fine-tune itself and returns the last
  round's pruned model for the core's fine-tune.
- The model-structure rules (split blocks, layers whose channels stay) are the core's (``yoloslim.make_prunable``,
  ``yoloslim.prune_ignored_layers``, :mod:`yoloslim.structure`), shared with third-party pruners; the core's safe
  loader allows the split blocks a channel-pruned checkpoint pickles.
- ``yoloslim_check_stage`` checks, before any stage runs, that a data-driven importance (``taylor``, ``loss``) has
  labelled training images to compute the detection loss on.
- Unstructured masks are kept through training: re-applied after every optimizer step (model and
  EMA), raised along the cubic schedule at epoch ends, and applied to every saved checkpoint. Any
  later training stage of the run keeps the zeros as well.
- The report gets ``sparsity``, ``dense MB`` and ``zipped MB`` columns once a magnitude stage ran.

Run state lives in ``ctx.state["prune"]``; a DDP rank rebuilds the masks from the model's zeros.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn
from ultralytics.utils.torch_utils import unwrap_model

from yoloslim import DataError, StageType, hookimpl

from .magnitude import apply_masks, cubic_sparsity, magnitude_masks, masks_from_zeros, sparsity
from .options import STAGE_TYPE
from .pruning import prune_model

_KEY = "prune"


def _state(ctx: Any) -> dict[str, Any]:
    return ctx.state.setdefault(_KEY, {})


def _magnitude_stage(ctx: Any) -> Any:
    """The validated options of the current stage if it is a magnitude ``prune`` stage, else None."""
    stage = ctx.stage
    if stage is None or stage.type != "prune" or stage.options.method != "magnitude":
        return None
    return stage.options


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare the ``prune`` stage."""
    return [STAGE_TYPE]


@hookimpl
def yoloslim_check_stage(stage: Any, ctx: Any) -> None:
    """Refuse a data-driven importance (taylor, loss) without labelled training images, and BatchNorm
    recalibration without images, before any stage runs."""
    if stage.type != "prune":
        return
    where = f"stage '{stage.name}'"
    opts = stage.options
    if opts.measures_latency:
        from .latency import check_latency_stage

        check_latency_stage(opts, ctx, where)
    if opts.recalibrate and ctx.data is None:
        raise DataError(f"{where}: 'recalibrate' re-estimates BatchNorm statistics on the stage's images; pass --data")
    if not opts.needs_data:
        return
    if ctx.data is None:
        raise DataError(
            f"{where}: importance '{opts.importance}' ranks by the detection loss on training images; "
            "pass --data, or set 'importance' to l1, l2 or bn"
        )
    from yoloslim import check_dataset, has_labels

    if not has_labels(check_dataset(ctx.data), "train"):
        raise DataError(
            f"{where}: importance '{opts.importance}' ranks by the detection loss on labelled training "
            f"images, but the train split of dataset '{ctx.data}' has no labels; set 'importance' to "
            "l1, l2 or bn, or add YOLO label files for the train images (labels/ beside images/)"
        )


@hookimpl
def yoloslim_transform_model(model: nn.Module, stage: Any, ctx: Any) -> nn.Module | None:
    """Prune ``model`` as the ``prune`` stage says; None for other stage types."""
    if stage.type != "prune":
        return None
    opts = stage.options
    if opts.method == "magnitude":
        state = _state(ctx)
        state["sparse"] = True
        if opts.schedule is None:
            apply_masks(model, magnitude_masks(model, opts.ratio, opts.global_pruning))
            ctx.logger.info(
                "magnitude pruning: sparsity %.3f (%s)",
                sparsity(model),
                "global" if opts.global_pruning else "per layer",
            )
        return model
    return prune_model(model, opts, ctx, stage)


@hookimpl
def yoloslim_train_start(trainer: Any, ctx: Any) -> None:
    """Keep the zeros of a magnitude-pruned model (this stage's or an earlier stage's) through training."""
    state = ctx.state.get(_KEY) or {}
    opts = _magnitude_stage(ctx)
    if opts is None and not state.get("sparse"):
        return
    model = unwrap_model(trainer.model)
    masks = masks_from_zeros(model)  # the zeros are the masks: this works in a DDP rank and after any earlier stage
    state = _state(ctx)
    state.update(sparse=True, masks=masks, sparsity=sparsity(model))
    if masks:
        ctx.logger.info("keeping %d pruning masks through training (sparsity %.3f)", len(masks), state["sparsity"])


@hookimpl
def yoloslim_after_optimizer_step(trainer: Any, ctx: Any) -> None:
    """Re-apply the masks to the model and its EMA."""
    masks = (ctx.state.get(_KEY) or {}).get("masks")
    if masks:
        apply_masks(unwrap_model(trainer.model), masks)
        if getattr(trainer, "ema", None) is not None:
            apply_masks(trainer.ema.ema, masks)


@hookimpl
def yoloslim_epoch_end(trainer: Any, ctx: Any) -> None:
    """Raise the sparsity along the cubic schedule of a gradual magnitude stage."""
    opts = _magnitude_stage(ctx)
    if opts is None or opts.schedule is None:
        return
    state = _state(ctx)
    target = cubic_sparsity(trainer.epoch + 1, *opts.schedule, opts.ratio)
    if target <= state.get("scheduled", 0.0) + 1e-9:
        return
    model = unwrap_model(trainer.model)
    masks = magnitude_masks(model, target, opts.global_pruning)
    apply_masks(model, masks)
    if getattr(trainer, "ema", None) is not None:
        apply_masks(trainer.ema.ema, masks)
    state.update(masks=masks, scheduled=target, sparsity=sparsity(model))
    # A checkpoint from before this sparsity step must not win 'best': the stage's output is the sparse model.
    trainer.best_fitness = None
    ctx.logger.info(
        "epoch %d: sparsity %.3f (schedule %s, final %.3f)",
        trainer.epoch + 1,
        state["sparsity"],
        opts.schedule,
        opts.ratio,
    )


@hookimpl
def yoloslim_model_to_save(model: nn.Module, ctx: Any) -> nn.Module | None:
    """Store the masked weights (a copy; the live model keeps training)."""
    masks = (ctx.state.get(_KEY) or {}).get("masks")
    if not masks:
        return None
    saved = copy.deepcopy(model)
    apply_masks(saved, masks)
    return saved


@hookimpl
def yoloslim_train_end(trainer: Any, ctx: Any) -> None:
    """Log the sparsity reached and drop this stage's masks (later stages rebuild them from the zeros)."""
    state = ctx.state.get(_KEY) or {}
    if state.get("masks"):
        ctx.logger.info("pruning masks made permanent: sparsity %.3f", sparsity(trainer.ema.ema))
    state.pop("masks", None)
    state.pop("scheduled", None)


@hookimpl
def yoloslim_report_columns(measurement: Any, ctx: Any) -> dict[str, Any] | None:
    """Sparsity, dense and zipped size of every row, once a magnitude stage ran; a latency budget on its stage's row.

    A budget row gets ``budget ms`` and ``pruned at ms`` (what the search measured in the stage's runtime, size and
    threads when it chose the model); the report's own latency column is the independent measurement.
    """
    state = ctx.state.get(_KEY) or {}
    columns: dict[str, Any] = {}
    budget = (state.get("latency") or {}).get("budget")
    if budget and measurement.stage == state["latency"].get("stage"):
        lat = state["latency"]
        columns["budget ms"] = f"{budget['target_ms']:.2f} ({lat['runtime']}, {lat['imgsz']} px)"
        columns["pruned at ms"] = round(budget["measured_ms"], 2)
    if state.get("sparse"):
        from .storage import storage_stats

        columns.update(storage_stats(measurement.path))
    return columns or None
