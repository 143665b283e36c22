"""The distillation plugin's hook implementations: the ``distill`` stage and its training-loop behaviour.

- ``yoloslim_check_stage`` checks the teacher before any stage runs: it exists, loads, is a detection model, has the
  dataset's class names, and supports the methods the user asked for.
- ``yoloslim_transform_model`` loads the teacher and checks its class names against the student's, so a
  mismatch fails before any training; the student itself is returned unchanged (a pruned student included).
- ``yoloslim_train_start`` builds the :class:`~yoloslim_distill.distiller.Distiller` on the training device:
  frozen fused teacher, adapters sized by a dummy forward of the live student, and one extra optimizer
  parameter group for the adapters (with ``initial_lr``, covered by Ultralytics' warmup and LR scheduler).
- ``yoloslim_extra_loss`` returns one weighted term per method (``kd_logit``, ``kd_ld``, ``kd_cwd``,
  ``kd_mgd``, ``kd_sl2``), logged by name.
- Teacher and adapters live in ``ctx.state["distill"]``, never on the model: the EMA, ``last.pt``/``best.pt``
  and the stage's output hold only the student. A DDP rank rebuilds them from the stage's options.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn
from ultralytics.utils.torch_utils import unwrap_model

from yoloslim import RecipeError, StageType, hookimpl

from .adapters import head_info
from .distiller import Distiller
from .options import ORIGINAL, STAGE_TYPE, DistillOptions
from .pairing import check_requested_for_teacher, fit_methods
from .teacher import Teacher, check_same_classes, check_teacher

_KEY = "distill"


def _state(ctx: Any) -> dict[str, Any]:
    return ctx.state.setdefault(_KEY, {})


def _options(ctx: Any) -> DistillOptions | None:
    stage = ctx.stage
    if stage is None or stage.type != "distill":
        return None
    return resolved(stage.options, ctx, f"stage '{stage.name}'")


def resolved(opts: DistillOptions, ctx: Any, where: str) -> DistillOptions:
    """``opts`` with ``teacher: original`` replaced by the run's input checkpoint (label-free recovery)."""
    if opts.teacher != ORIGINAL:
        return opts
    if not ctx.model:
        raise RecipeError(
            f"{where}: 'teacher: {ORIGINAL}' is the run's input checkpoint, and this run has none; "
            "name a teacher checkpoint"
        )
    return replace(opts, teacher=str(ctx.model))


def add_param_group(trainer: Any, params: list[nn.Parameter]) -> None:
    """Add ``params`` to the trainer's optimizer as a group Ultralytics' warmup and LR scheduler drive.

    The group copies the settings of the ``weight`` group (learning rate, ``initial_lr``, betas/momentum, weight
    decay), and the ``LambdaLR`` scheduler gets a base LR and a lambda for it.
    """
    if not params:
        return
    opt = trainer.optimizer
    ref = next((g for g in opt.param_groups if g.get("param_group") == "weight"), opt.param_groups[0])
    group = {k: v for k, v in ref.items() if k not in ("params", "use_muon")}
    group.setdefault("initial_lr", group["lr"])
    group["param_group"] = "distill"
    opt.add_param_group({"params": params, **group})
    sched = getattr(trainer, "scheduler", None)
    if sched is not None:
        sched.base_lrs.append(group["initial_lr"])
        sched.lr_lambdas.append(sched.lr_lambdas[0])


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare the ``distill`` stage."""
    return [STAGE_TYPE]


@hookimpl
def yoloslim_check_stage(stage: Any, ctx: Any) -> None:
    """Check the teacher against the dataset and the requested methods before any stage runs (nothing is written)."""
    if stage.type != "distill":
        return
    where = f"stage '{stage.name}'"
    opts = resolved(stage.options, ctx, where)
    teacher = check_teacher(opts.teacher, ctx.data, where)
    check_requested_for_teacher(opts, head_info(teacher), where)


@hookimpl
def yoloslim_transform_model(model: nn.Module, stage: Any, ctx: Any) -> nn.Module | None:
    """Load the teacher and check the pair (classes, heads, methods) before training; the student is returned as is."""
    if stage.type != "distill":
        return None
    where = f"stage '{stage.name}'"
    opts = resolved(stage.options, ctx, where)
    teacher = Teacher.load(opts.teacher, opts.teacher_precision)
    check_same_classes(teacher.model, model, opts.teacher)
    opts, notes = fit_methods(opts, head_info(model), head_info(teacher.model), where)
    for note in notes:
        ctx.logger.info("%s: %s", where, note)
    if stage.epochs > 0:
        _state(ctx)["teacher"] = teacher  # train start takes it from here instead of loading it again
    ctx.logger.info(
        "teacher %s (%d parameters), methods %s",
        opts.teacher,
        sum(p.numel() for p in teacher.model.parameters()),
        ", ".join(f"{m}={w:g}" for m, w in opts.loss_weights.items()),
    )
    return model


@hookimpl
def yoloslim_train_start(trainer: Any, ctx: Any) -> None:
    """Build the distiller for this training run (teacher on the device, adapters in the optimizer)."""
    state = _state(ctx)
    state.pop("distiller", None)
    opts = _options(ctx)
    if opts is None:
        return
    teacher = state.pop("teacher", None) or Teacher.load(opts.teacher, opts.teacher_precision)
    distiller = Distiller(teacher, unwrap_model(trainer.model), opts)
    add_param_group(trainer, distiller.parameters())
    state["distiller"] = distiller
    w = distiller.widths
    ctx.logger.info(
        "distilling with %s; feature widths student %s, teacher %s; %d adapter parameters; teacher forward in %s",
        ", ".join(f"{m}={v:g}" for m, v in distiller.opts.loss_weights.items()),
        w["student"],
        w["teacher"],
        sum(p.numel() for p in distiller.parameters()),
        distiller.teacher.dtype or "float32",
    )


@hookimpl
def yoloslim_extra_loss(batch: dict[str, Any], preds: Any, model: nn.Module, ctx: Any) -> dict[str, Any] | None:
    """The weighted distillation terms of this batch, or None outside a ``distill`` stage."""
    distiller = (ctx.state.get(_KEY) or {}).get("distiller")
    if distiller is None:
        return None
    trainer = ctx.trainer
    epoch, epochs = (trainer.epoch, trainer.epochs) if trainer is not None else (0, 1)
    return distiller.losses(batch["img"], preds, epoch, epochs)


@hookimpl
def yoloslim_train_end(trainer: Any, ctx: Any) -> None:
    """Release the teacher and the adapters."""
    (ctx.state.get(_KEY) or {}).pop("distiller", None)
