"""The hook contract between the yoloslim core and its plugins.

Every compression method, export target and runtime is a plugin: a module (or object) with functions
marked ``@yoloslim.hookimpl`` whose names match the hooks below, registered through the ``yoloslim``
entry-point group. A plugin implements only the hooks it needs and may accept any subset of a hook's
arguments, named as here.

Calling conventions, as in pluggy:

- Hooks marked *first result wins* stop at the first plugin that returns something other than
  ``None``; a plugin returns ``None`` for a stage type or format it does not own.
- Other hooks call every implementation and collect the results.
- Every hook receives ``ctx``, the :class:`yoloslim.context.SlimContext` of the run: run directory,
  the current stage (``ctx.stage``, ``None`` outside a recipe), the dataset YAML, image size,
  device, a ``state`` dict shared by all plugins for the duration of the run, and ``ctx.export``,
  ``ctx.finetune`` and ``ctx.logger``. Plugins keep per-run state on ``ctx.state`` or on the model, never in module
  globals: under multi-GPU training each rank rebuilds ``ctx`` and the plugin set from scratch.
- An exception raised inside a hook stops the run with a :class:`yoloslim.errors.PluginError` that
  names the plugin and the hook; raise a :class:`yoloslim.errors.YoloslimError` subclass yourself
  for bad user input (it reaches the user unchanged).

Training-loop hooks fire in *every* training stage, whichever plugin owns the stage; a plugin acts
only when ``ctx.stage`` (or what it put into ``ctx.state`` earlier) concerns it.

Every moment of a ``"model"`` stage has one hook, in this order: :func:`yoloslim_check_stage` (before any stage
runs), :func:`yoloslim_transform_model`, then, when the stage has epochs, :func:`yoloslim_train_start`,
:func:`yoloslim_batch_start` / :func:`yoloslim_extra_loss` / :func:`yoloslim_after_optimizer_step` per batch,
:func:`yoloslim_epoch_end`, :func:`yoloslim_model_to_save` at each checkpoint write, :func:`yoloslim_train_end`;
then :func:`yoloslim_finalize_model` once, :func:`yoloslim_model_to_save` for the single write of the stage's
output, and after the last stage :func:`yoloslim_report_columns` per measured row. An ``"artifact"`` stage has
:func:`yoloslim_check_stage` and :func:`yoloslim_build_artifact` (which may train through ``ctx.finetune``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import torch

    from yoloslim.context import SlimContext
    from yoloslim.measurement import Measurement
    from yoloslim.recipe import Stage, StageType

hookspec = pluggy.HookspecMarker("yoloslim")
hookimpl = pluggy.HookimplMarker("yoloslim")


# ---------------------------------------------------------------------------------------------
# Recipe


@hookspec
def yoloslim_stage_types() -> list[StageType]:
    """Declare the recipe stage types this plugin handles.

    Called once when the plugin manager is built, before any recipe is read. Each
    :class:`yoloslim.recipe.StageType` names the stage (``"prune"``), its options with their types
    and defaults, whether the core fine-tunes the model after the stage's transform
    (``accepts_training=True``, which also allows the common ``epochs`` and ``train`` keys) and what the
    stage produces (``"model"``: a checkpoint; ``"artifact"``: a file built by
    :func:`yoloslim_build_artifact`). Recipes are validated against the union of all declared
    types before any work starts; two plugins declaring the same name is an error.

    Returns:
        A list of stage types (may be empty).
    """


@hookspec
def yoloslim_check_stage(stage: Stage, ctx: SlimContext) -> None:
    """Check, before any work, everything ``stage`` will need at run time.

    Fires once per stage of a recipe, in order, after the checkpoint, the dataset and the recipe were
    validated and before the first stage starts (``ctx.stage`` is ``stage``; ``ctx.data``, ``ctx.imgsz`` and
    ``ctx.run_dir`` are set, the run directory may not exist yet). The owner of ``stage.type`` checks what
    only it knows: files its options name (a teacher checkpoint, a calibration split), formats, and values
    that depend on the dataset or the model. Raise a :class:`yoloslim.errors.YoloslimError` subclass whose
    message names the option and the fix; return ``None`` otherwise. Do no work here (no training, no export):
    a failing check must leave nothing behind. Option types and conflicts that need no run context belong
    in :attr:`yoloslim.recipe.StageType.check`, which runs while the recipe is parsed.
    """


# ---------------------------------------------------------------------------------------------
# Model


@hookspec
def yoloslim_checkpoint_classes() -> list[type]:
    """Return the classes this plugin's stages may leave pickled inside a checkpoint (e.g. a pruned block).

    yoloslim unpickles checkpoints with ``torch.load(weights_only=True)`` against an allowlist
    (:mod:`yoloslim.trust`): Ultralytics' and torch's model classes plus what plugins return here. A checkpoint
    holding any other class is refused unless the user trusts it (``--trust-checkpoint``). Return only classes
    whose unpickling sets attributes and runs no other code (``nn.Module`` subclasses defined in your package);
    everything they reference must itself be allowed.
    """


@hookspec(firstresult=True)
def yoloslim_transform_model(model: torch.nn.Module, stage: Stage, ctx: SlimContext) -> torch.nn.Module | None:
    """Transform ``model`` for ``stage`` before the stage's fine-tuning (first result wins).

    Fires once per ``"model"`` stage, on the float32 model on CPU loaded from the previous stage's
    checkpoint. The owner of ``stage.type`` returns the new model (pruned, wrapped for
    distillation, with fake quantizers inserted, ...); every other plugin returns ``None``. A
    stage whose owner returns ``None`` keeps the model unchanged. The returned model must remain an
    Ultralytics ``DetectionModel`` (or a wrapper whose :func:`yoloslim_model_to_save` returns one),
    so Ultralytics' trainer, validator and checkpoint format keep working.
    """


@hookspec
def yoloslim_model_to_save(model: torch.nn.Module, ctx: SlimContext) -> torch.nn.Module | None:
    """Return the model to serialize in place of ``model``, or ``None`` to leave it as it is.

    Fires every time a checkpoint is written (each epoch's ``last.pt``/``best.pt`` and a stage's
    output); it must not change what the model computes (that is :func:`yoloslim_finalize_model`'s job,
    once). Implementations are *chained*: each receives what the previous one returned. Use it
    to strip training-only parts (a teacher, adapters, pruning masks made permanent) so the saved
    file is a plain Ultralytics checkpoint. Do not modify ``model`` in place; return a new module
    (the live model keeps training).
    """


@hookspec
def yoloslim_finalize_model(model: torch.nn.Module, stage: Stage, ctx: SlimContext) -> torch.nn.Module | None:
    """Act once on a stage's final model, just before the stage's output is written; return the model to write.

    The one right place for end-of-training transforms: removing the channels a sparsity regulariser drove to zero,
    making pruning masks permanent, folding fake quantizers. Fires once per ``"model"`` stage, after the stage's
    fine-tuning (``ctx.trainer`` is ``None`` again) or, for a stage without epochs, right after its transform.
    ``model`` is a float32 ``DetectionModel`` on the CPU:

    - with epochs: the model of the fine-tuning run's ``best.pt`` (the EMA weights of the epoch with the best
      validation fitness, as Ultralytics picks it; ``last.pt`` if no best was written), already passed through
      :func:`yoloslim_model_to_save`;
    - without epochs: the model :func:`yoloslim_transform_model` returned.

    Implementations are *chained* like :func:`yoloslim_model_to_save`: the owner of ``stage.type`` (or a plugin
    whose ``ctx.state`` says it acted in this stage) returns the model to write -- a new one, or ``model`` itself
    changed in place (the model is this hook's to change; Torch-Pruning prunes in place) -- and every other plugin
    returns ``None``. The result
    goes through :func:`yoloslim_model_to_save` once more and is written once, as ``<stage_dir>/<stage name>.pt``:
    the file the next stage reads and the report measures. The training run's own files stay as training wrote
    them, each consistent with itself: ``train/weights/last.pt`` is the resumable state (model and optimizer
    agree), and ``best.pt`` and ``results.csv`` describe the model before this hook. Artifact stages do not fire
    it; they build their file in :func:`yoloslim_build_artifact`.
    """


# ---------------------------------------------------------------------------------------------
# Training loop (fired by yoloslim.trainer.SlimTrainer at Ultralytics' own callback points)


@hookspec
def yoloslim_train_start(trainer: Any, ctx: SlimContext) -> None:
    """Training is about to start (Ultralytics ``on_train_start``).

    ``trainer`` is the :class:`yoloslim.trainer.SlimTrainer`: model, optimizer, dataloaders and
    EMA exist. Set up per-run state here (e.g. register masks, move a teacher to
    ``trainer.device``).
    """


@hookspec
def yoloslim_batch_start(trainer: Any, ctx: SlimContext) -> None:
    """A training batch is about to run (Ultralytics ``on_train_batch_start``)."""


@hookspec
def yoloslim_extra_loss(
    batch: dict[str, Any], preds: Any, model: torch.nn.Module, ctx: SlimContext
) -> dict[str, torch.Tensor] | None:
    """Return extra loss terms for this training batch, keyed by name.

    Fires inside the detection loss, in training mode only, after Ultralytics computed its own
    terms. ``batch`` is the preprocessed batch (``batch["img"]`` on the training device), ``preds``
    the student's raw head outputs, ``model`` the (unwrapped) model being trained. Each value is a
    scalar tensor on the same scale as the logged ``box``/``cls``/``dfl`` items (a per-image mean);
    the core multiplies it by the batch size as Ultralytics does for its own terms, adds it to the
    loss, and logs it by name in the progress bar and ``results.csv``. Names must be unique across
    plugins and stable from the first batch on. Return ``None`` or ``{}`` for no terms.

    A term that does not depend on the images (a regulariser on weights: L1 on BatchNorm gammas, L2-SP) is
    returned as it is, e.g. ``{"bn_l1": weight * sum(|gamma|)}``: being multiplied by the batch size like
    every item, it weighs per image exactly as much as the detection loss does, whatever the batch size.
    """


@hookspec
def yoloslim_after_optimizer_step(trainer: Any, ctx: SlimContext) -> None:
    """The optimizer just stepped and the EMA was updated (e.g. re-apply pruning masks)."""


@hookspec
def yoloslim_epoch_end(trainer: Any, ctx: SlimContext) -> None:
    """A training epoch ended, before validation (Ultralytics ``on_train_epoch_end``).

    ``trainer.epoch`` is the 0-based epoch that ended. Use it for schedules (sparsity, loss weights).
    """


@hookspec
def yoloslim_train_end(trainer: Any, ctx: SlimContext) -> None:
    """Training ended and the best checkpoint was validated (Ultralytics ``on_train_end``)."""


# ---------------------------------------------------------------------------------------------
# Artifacts and runtimes


@hookspec(firstresult=True)
def yoloslim_build_artifact(checkpoint: Path, stage: Stage, ctx: SlimContext) -> Path | None:
    """Build the file of an ``"artifact"`` stage from ``checkpoint`` (first result wins).

    The owner of ``stage.type`` writes its artifact into ``ctx.stage_dir`` (temporary name, then
    rename) and returns its path; others return ``None``.
    """


@hookspec
def yoloslim_export_formats() -> list[str]:
    """Return the format names this plugin's :func:`yoloslim_export` writes (e.g. ``["onnx"]``).

    Asked before any work, so that a recipe or command naming a format no loaded plugin writes stops with one
    line instead of failing after the stages that precede its export; also listed by ``yoloslim plugins``.
    Return only formats this machine can produce (an ``engine`` exporter without TensorRT installed returns
    ``[]``).
    """


@hookspec(firstresult=True)
def yoloslim_export(checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: SlimContext) -> Path | None:
    """Export the Ultralytics checkpoint ``checkpoint`` to format ``fmt`` at ``out`` (first result wins).

    ``fmt`` is a format name such as ``"onnx"`` or ``"engine"``; ``options`` holds format options
    (``imgsz``, ``opset``, ``dynamic``, ``half``, ...). Return the written path, or ``None`` when the
    format is not yours. Write to a temporary name and rename, so a failure leaves no file at
    ``out``. Other plugins reach this hook through ``ctx.export(checkpoint, fmt, out, **options)``.
    """


@hookspec(firstresult=True)
def yoloslim_open_runtime(path: Path, threads: int, device: str) -> Any | None:
    """Open ``path`` for inference and return a runtime, or ``None`` if its format is not yours.

    A runtime is a callable taking one float32 NCHW ``numpy`` array in ``[0, 1]`` (letterboxed,
    RGB) and returning the model's raw outputs: the first one is either ``(batch, 4 + nc, anchors)`` (boxes
    before NMS) or YOLO26's end-to-end ``(batch, k, 6)``; the agreement metric decodes both
    (:mod:`yoloslim.detections`). The measurement harness times exactly this call, so do all one-time work
    (engine build, session creation) here. The core has built-in runtimes for
    ``.pt`` and ``.onnx``; plugins are asked first.
    """


# ---------------------------------------------------------------------------------------------
# Report


@hookspec
def yoloslim_report_columns(measurement: Measurement, ctx: SlimContext) -> dict[str, Any] | None:
    """Return extra report columns for one measured artifact (e.g. ``{"sparsity": 0.5}``).

    Fires once per row of the report, after measurement; ``measurement.stage`` names the recipe stage that
    produced the row's file (``None`` for the original and its baselines) and ``measurement.source`` the file it
    was built from. Values must be JSON-serializable; the union of all columns appears in ``report.md`` and
    ``report.json``. Leave a key out of a row where the column does not apply: the table prints ``-`` for a
    missing key (and for a ``None`` value) and the JSON row has no such key.
    """
