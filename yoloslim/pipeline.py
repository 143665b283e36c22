"""Run a recipe: load -> stages (transform, fine-tune) -> artifacts -> measure -> report."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloslim.checkpoint import load_checkpoint, save_checkpoint
from yoloslim.context import SlimContext
from yoloslim.dataset import (
    check_class_names,
    check_dataset,
    check_images,
    check_labels,
    check_split,
    has_labels,
    split_images,
)
from yoloslim.errors import ModelError, PluginError
from yoloslim.files import atomic_copy
from yoloslim.measurement import Measurement, check_imgsz, check_runs, check_threads, measure, model_stride
from yoloslim.options import options_dict
from yoloslim.outputs import run_directory
from yoloslim.plugins import PluginManager, get_plugin_manager
from yoloslim.recipe import Recipe, Stage, load_recipe
from yoloslim.report import write_report
from yoloslim.trust import trust_scope

LOGGER = logging.getLogger("yoloslim.pipeline")


@dataclass
class CompressResult:
    """What ``compress`` produced.

    Attributes:
        run_dir: The run directory.
        artifacts: (name, path) of the original and of every stage's output, in order.
        measurements: One Measurement per artifact, same order.
        report_md: Path of ``report.md``.
        report_json: Path of ``report.json``.
        missed: One line per target a stage set and missed (e.g. a mixed-precision budget); the artifact was still
            written. The CLI prints them and exits with status 3.
    """

    run_dir: Path
    artifacts: list[tuple[str, Path]] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    report_md: Path | None = None
    report_json: Path | None = None
    missed: list[str] = field(default_factory=list)


def default_imgsz(ckpt: dict[str, Any], fallback: int = 640) -> int:
    """Image size a checkpoint was trained at (``train_args.imgsz``), else ``fallback``."""
    imgsz = (ckpt.get("train_args") or {}).get("imgsz")
    return int(imgsz) if isinstance(imgsz, int) else fallback


def model_imgsz(path: str | Path, fallback: int = 640) -> int:
    """Image size a model file was made for: a checkpoint's training size, an ONNX file's input size."""
    path = Path(path)
    if path.suffix == ".pt":
        return default_imgsz(load_checkpoint(path)[1], fallback)
    if path.suffix == ".onnx" and path.is_file():
        import onnx

        try:
            dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        except Exception as e:  # protobuf's DecodeError, an empty graph: the file is not an ONNX model
            raise ModelError(
                f"{path}: not a loadable ONNX model ({type(e).__name__}); re-export it "
                f"(yoloslim export MODEL.pt --out {path.name})"
            ) from e
        if len(dims) == 4 and dims[2].dim_value > 0:
            return int(dims[2].dim_value)
    return fallback


def check_classes(ckpt: dict[str, Any], data_dict: dict[str, Any], model: Path, data: str | Path) -> None:
    """Raise DataError when the checkpoint's classes are not the dataset's (see ``check_class_names``)."""
    net = ckpt.get("ema") or ckpt.get("model")
    check_class_names(getattr(net, "names", None), data_dict["names"], model, data)


def default_split(data_dict: dict[str, Any], split: str | None = None) -> str:
    """``split`` if given, else ``test`` when the dataset has one, else ``val``."""
    return split or ("test" if data_dict.get("test") else "val")


def input_files(rec: Recipe) -> list[Path]:
    """Files a recipe's stages read: every string option that names an existing file (a teacher, a calibration list)."""
    files = []
    for stage in rec.stages:
        for value in options_dict(stage.options).values():
            if isinstance(value, str) and value and Path(value).exists():
                files.append(Path(value))
    return files


# Training arguments a fine-tune inherits from the checkpoint's own training, so it sees the data the
# way the model was trained (augmentation, optimizer, batch); the recipe's `train` overrides them.
INHERITED_TRAIN_ARGS = (
    "batch",
    "nbs",
    "optimizer",
    "momentum",
    "weight_decay",
    "cos_lr",
    "mosaic",
    "mixup",
    "cutmix",
    "copy_paste",
    "close_mosaic",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "erasing",
    "box",
    "cls",
    "dfl",
)


# Ultralytics' optimizer='auto' (engine/trainer.py build_optimizer): SGD-like at lr 0.01 past this many iterations,
# else AdamW at a learning rate fitted to the class count.
_AUTO_ITERATIONS = 10000
_COCO_TRAIN_IMAGES = 118287  # the official checkpoints' train_args name coco.yaml: their own training set's size


# Checkpoint metadata (``ckpt["yoloslim"]``) of a model a "restart" stage changed and no stage has trained since.
RELEARN = "relearn"


def resumed_schedule(train_args: dict[str, Any] | None, n_train: int, nc: int, restart: bool = False) -> dict[str, Any]:
    """Training arguments that continue where the checkpoint's own schedule ended: every stage's default.

    A trained model fine-tuned at Ultralytics' defaults (``lr0=0.01``, 3 warm-up epochs with a bias learning rate of
    0.1) loses in one epoch what it learned; the learning rate its own training ended at does not. So, unless the
    stage type, the recipe or the command line set them: ``lr0`` is the checkpoint's ``lr0 x lrf`` (its final
    learning rate), ``warmup_epochs`` is 0, and an ``optimizer='auto'`` checkpoint gets the optimizer and learning
    rate Ultralytics' 'auto' picked for it (which ignores ``lr0``): SGD at 0.01 past 10000 iterations, else AdamW at
    ``0.002 * 5 / (4 + nc)``, with iterations counted as its ``epochs`` over ``n_train`` images (COCO's 118287 for
    a checkpoint trained on coco.yaml).

    Args:
        train_args: The checkpoint's ``train_args``.
        n_train: Training images of the fine-tuning dataset.
        nc: Number of classes.
        restart: Start at the checkpoint's ``lr0`` (the start of its last schedule) instead of where it ended: for
            stages whose model must relearn (pruning: a stage type with ``schedule="restart"``).

    Returns:
        ``{"warmup_epochs": 0.0, "lr0": ..., ["optimizer": ..., "momentum": ...]}``; only the warm-up when the
        checkpoint records no learning rate.
    """
    args = train_args or {}
    out: dict[str, Any] = {"warmup_epochs": 0.0}
    lr0, lrf = args.get("lr0"), args.get("lrf")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (lr0, lrf)):
        return out
    if args.get("optimizer", "auto") == "auto":
        data = str(args.get("data") or "")
        images = _COCO_TRAIN_IMAGES if Path(data).name.startswith("coco") and "coco8" not in data else n_train
        batch = max(int(args.get("batch") or 16), int(args.get("nbs") or 64))
        iterations = math.ceil(images / batch) * int(args.get("epochs") or 100)
        if iterations > _AUTO_ITERATIONS:
            out.update(optimizer="SGD", momentum=0.9)
            lr0 = 0.01
        else:
            out.update(optimizer="AdamW", momentum=0.9)
            lr0 = round(0.002 * 5 / (4 + nc), 6)
    out["lr0"] = float(lr0) if restart else float(lr0) * float(lrf)
    return out


def finetune(
    model: Any,
    stage: Stage,
    ctx: SlimContext,
    checkpoint: Path,
    train_args: dict[str, Any] | None = None,
    name: str = "train",
    restart: bool | None = None,
) -> Path:
    """Fine-tune ``model`` with SlimTrainer for ``stage.epochs`` and return its best checkpoint.

    Args:
        model: The (transformed) model to train as it is.
        stage: The recipe stage (``epochs``, ``train`` overrides).
        ctx: The run context.
        checkpoint: The checkpoint ``model`` came from (recorded as Ultralytics' ``model`` argument).
        train_args: The checkpoint's own ``train_args``; the keys in ``INHERITED_TRAIN_ARGS`` are reused, and the
            learning rate starts where its schedule ended (:func:`resumed_schedule`) unless ``stage.train`` says
            otherwise.
        name: Folder of the Ultralytics run inside ``ctx.stage_dir``.
        restart: Restart the checkpoint's schedule (:func:`resumed_schedule`); default: the stage type's ``schedule``.

    Plugins call it as :meth:`yoloslim.SlimContext.finetune`.
    """
    from yoloslim.trainer import SlimTrainer

    inherited = {k: v for k, v in (train_args or {}).items() if k in INHERITED_TRAIN_ARGS and v is not None}
    data = check_dataset(ctx.data)
    restart = stage.schedule == "restart" if restart is None else restart
    schedule = resumed_schedule(train_args, len(split_images(data, "train")), len(data["names"]), restart)
    if {"optimizer", "lr0"} & set(stage.train):  # a learning rate chosen for another optimizer would not fit
        schedule = {k: v for k, v in schedule.items() if k not in ("optimizer", "lr0", "momentum")}
    overrides = {
        "imgsz": ctx.imgsz,
        "plots": False,
        **inherited,
        **schedule,
        **stage.train,
        "model": str(checkpoint),
        "data": str(ctx.data),
        "epochs": stage.epochs,
        "device": ctx.device,
        "project": str(ctx.stage_dir),
        "name": name,
        "exist_ok": True,
    }
    trainer = SlimTrainer(overrides=overrides, model=model, ctx=ctx)
    ctx.trainer = trainer
    try:
        trainer.train()
    finally:
        ctx.trainer = None
    best = trainer.best if trainer.best.exists() else trainer.last
    if not best.exists():
        raise PluginError(f"stage '{stage.name}': training wrote no checkpoint in {trainer.wdir}")
    return best


def run_stage(stage: Stage, current: Path, ctx: SlimContext) -> Path:
    """Run one stage on the checkpoint ``current`` and return the path of its output."""
    pm = ctx.get_plugins()
    assert ctx.stage_dir is not None
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    if stage.produces == "artifact":
        path = pm.call("yoloslim_build_artifact", checkpoint=current, stage=stage, ctx=ctx)
        if path is None:
            raise PluginError(f"stage '{stage.name}': no loaded plugin built an artifact for stage type '{stage.type}'")
        return Path(path)

    model, ckpt = load_checkpoint(current)
    new = pm.call("yoloslim_transform_model", model=model, stage=stage, ctx=ctx)
    model = model if new is None else new
    out = ctx.stage_dir / f"{stage.name}.pt"
    train_args = {**(ckpt.get("train_args") or {}), "data": str(ctx.data), "imgsz": ctx.imgsz}
    # A model a "restart" stage changed (pruned) without training it must still relearn: whichever stage trains it
    # next (a distill stage after `prune` with `epochs: 0`, in this run or a later command) restarts the schedule.
    relearn = stage.schedule == "restart" or bool((ckpt.get("yoloslim") or {}).get(RELEARN))
    trained = None
    if stage.epochs > 0:
        trained = finetune(model, stage, ctx, current, ckpt.get("train_args"), restart=relearn)
        model, best = load_checkpoint(trained)  # the model best.pt holds, as yoloslim_model_to_save left it
        train_args = best.get("train_args") or train_args
    final, acted = pm.chain_acted("yoloslim_finalize_model", model, "model", stage=stage, ctx=ctx)
    if trained is not None and not acted:  # nothing to finalize: the run's best.pt is the stage's output
        atomic_copy(trained, out)
        return out
    save_checkpoint(
        pm.chain("yoloslim_model_to_save", final, "model", ctx=ctx),
        out,
        train_args=train_args,
        yoloslim={
            "stage": stage.to_dict(),
            "source": str(Path(current).resolve()),
            **({"finalized_from": str(Path(trained).resolve())} if trained is not None else {}),
            **({RELEARN: True} if relearn and trained is None else {}),
        },
    )
    return out


def compress(
    model: str | Path,
    data: str | Path,
    recipe: str | Path | Recipe,
    out: str | Path | None = None,
    imgsz: int | None = None,
    device: str = "cpu",
    split: str | None = None,
    threads: int = 2,
    runs: int = 50,
    plugins: PluginManager | None = None,
    trust: bool | None = None,
    footage: Any = None,
) -> CompressResult:
    """Compress ``model`` with ``recipe`` and report original vs every artifact.

    Args:
        model: Ultralytics detection checkpoint (``best.pt``).
        data: Dataset YAML the model was trained on, or footage for label-free compression: a video or a folder of
            images, whose sampled frames the original labels itself (:mod:`yoloslim.footage`); the report then scores
            every row by its agreement with the FP32 original on held-out frames.
        recipe: Recipe YAML path or a parsed :class:`Recipe`.
        out: Run directory (default ``runs/slim/<recipe name>``, numbered if it exists). An existing one is reused
            only if an earlier yoloslim run made it; its earlier stage folders and report are removed first.
        imgsz: Image size for training, export and measurement (default: the checkpoint's own).
        device: Ultralytics device for training (``"cpu"``, ``"0"``).
        split: Dataset split to measure mAP on (default ``test`` if the dataset has one, else ``val``).
        threads: CPU threads for latency measurement.
        runs: Timed runs per artifact for latency.
        plugins: Plugin manager (default: the installed plugins).
        trust: Unpickle checkpoints (the model, a teacher) without the safe-load allowlist; ``None``: the
            ``YOLOSLIM_TRUST_CHECKPOINTS`` environment variable (see :mod:`yoloslim.trust`).
        footage: :class:`yoloslim.footage.FootageOptions` (frames, range, pseudo-label confidence) when ``data`` is
            footage (default: 200 frames of the whole footage, confidence 0.25).

    Returns:
        A :class:`CompressResult` with the artifacts, measurements and report paths.

    Raises:
        YoloslimError: On bad input (checkpoint, dataset, recipe, options, output paths, what a stage will need)
            before any work starts, or a plugin failure.
    """
    pm = plugins or get_plugin_manager()
    with trust_scope(trust, pm):
        ctx, rec, labelled, split = _preflight(
            model, data, recipe, out, imgsz, device, split, threads, runs, pm, footage
        )
        model, data = Path(model), ctx.data  # footage became a pseudo-labelled dataset
        with run_directory(out, Path("runs/slim") / rec.name) as run_dir:
            ctx.run_dir = run_dir.resolve()
            return _run(model, data, rec, ctx, run_dir, split, labelled, threads, runs)


def _preflight(
    model: str | Path,
    data: str | Path,
    recipe: str | Path | Recipe,
    out: str | Path | None,
    imgsz: int | None,
    device: str,
    split: str | None,
    threads: int,
    runs: int,
    pm: PluginManager,
    footage: Any = None,
) -> tuple[SlimContext, Recipe, bool, str]:
    """Check everything the run will need before the first stage: nothing is written if a check fails."""
    from yoloslim.footage import FootageOptions, check_footage_options, is_footage, pseudo_labelled_dataset
    from yoloslim.outputs import check_free_space, check_output_dir, check_writable_folder

    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, pm.stage_types(), pm.failed)
    model = Path(model)
    net, ckpt = load_checkpoint(model)
    label_free = is_footage(data)
    if label_free:
        check_footage_options(footage or FootageOptions())
    else:
        data_dict = check_dataset(data)
        check_classes(ckpt, data_dict, model, data)
    check_threads(threads)
    check_runs(runs)
    imgsz = check_imgsz(
        imgsz if imgsz is not None else (rec.train.get("imgsz") or default_imgsz(ckpt)), model_stride(net)
    )
    inputs = [model, Path(data), *([rec.path] if rec.path else []), *input_files(rec)]
    if out is not None:
        check_output_dir(out, inputs)
    else:
        check_writable_folder("runs/slim")
    # The first artifact is about the original's size; baselines, stage checkpoints and a training run's last/best
    # need a few times that.
    check_free_space(out or "runs/slim", 4 * model.stat().st_size + 64 * 2**20)
    if label_free:  # the original labels sampled frames itself (cached under runs/pseudo/)
        data = pseudo_labelled_dataset(data, model, imgsz, footage)
        data_dict = check_dataset(data)
    split = check_split(data_dict, default_split(data_dict, split), data)
    trains = [s for s in rec.stages if s.epochs > 0]
    for name in dict.fromkeys([split, *(("train", "val") if trains else ())]):
        check_labels(data_dict, name, data)
        check_images(data_dict, name, data, sample=None if name == split else 64)
    ctx = SlimContext(
        run_dir=Path(out or Path("runs/slim") / rec.name).resolve(),
        data=str(Path(data).resolve()),
        imgsz=imgsz,
        device=device,
        recipe_path=str(rec.path) if rec.path else None,
        model=str(model.resolve()),
        plugins=pm,
    )
    for stage in rec.stages:
        ctx.stage = stage
        pm.call("yoloslim_check_stage", stage=stage, ctx=ctx)
    ctx.stage = None
    return ctx, rec, has_labels(data_dict, split), split


def _run(
    model: Path,
    data: str | Path,
    rec: Recipe,
    ctx: SlimContext,
    run_dir: Path,
    split: str,
    labelled: bool,
    threads: int,
    runs: int,
) -> CompressResult:
    """Run the checked recipe in ``run_dir``: stages, baselines, measurement, report."""
    pm = ctx.get_plugins()
    imgsz = ctx.imgsz
    LOGGER.info("compressing %s with recipe '%s' (%d stages) into %s", model, rec.name, len(rec.stages), run_dir)

    artifacts: list[tuple[str, Path]] = [("original", model)]
    origin: dict[str, tuple[str | None, Path | None]] = {"original": (None, None)}  # row -> (stage, built from)
    current = model
    for stage in rec.stages:
        ctx.stage, ctx.stage_dir = stage, ctx.run_dir / f"{stage.index + 1:02d}_{stage.name}"
        LOGGER.info("stage %d/%d: %s (%s)", stage.index + 1, len(rec.stages), stage.name, stage.type)
        path = run_stage(stage, current, ctx)
        artifacts.append((stage.name, path))
        origin[stage.name] = (stage.name, current)
        if stage.produces == "model":
            current = path
    ctx.stage, ctx.stage_dir = None, None

    extra = baselines(model, [p for _, p in artifacts[1:]], ctx)
    rows = [artifacts[0], *extra, *artifacts[1:]]
    reference = next((p for _, p in extra if p.suffix == ".onnx"), model)  # the FP32 ONNX when there is one
    opener = runtime_opener(pm)
    results = measure(
        [p for _, p in rows],
        data,
        imgsz=imgsz,
        split=split,
        threads=threads,
        runs=runs,
        runtime_opener=opener,
        names=[n for n, _ in rows],
        accuracy=labelled,
        reference=None if labelled else reference,
    )
    for m in results:
        stage_name, built_from = origin.get(m.name, (None, model))  # a baseline is exported from the original
        m.stage, m.source = stage_name, str(Path(built_from).resolve()) if built_from is not None else None
    for m in results:
        for cols in pm.call("yoloslim_report_columns", measurement=m, ctx=ctx):
            m.extra.update(cols or {})
    missed = list(ctx.state.get("missed") or [])
    md, js = write_report(
        run_dir,
        results,
        meta={
            "model": str(model),
            "data": str(data),
            "recipe": rec.name,
            "recipe_path": str(rec.path) if rec.path else None,
            "imgsz": imgsz,
            "split": split,
            "quality": "mAP (labels)" if labelled else f"agreement with the FP32 original ({Path(reference).name})",
            "stages": [s.to_dict() for s in rec.stages],
            "missed": missed,
        },
    )
    return CompressResult(run_dir, artifacts, results, md, js, missed)


def baselines(model: Path, artifacts: list[Path], ctx: SlimContext) -> list[tuple[str, Path]]:
    """The original in every deployment format among ``artifacts`` (FP32), so each speed-up compares like with like.

    A ``.pt`` against its INT8 ``.onnx`` measures the format change as much as the compression: for every artifact
    format other than the original's, the original is exported to it (default, FP32 options) into
    ``<run dir>/00_original/``. A format the export plugins cannot produce here is left without a baseline (logged).
    """
    from yoloslim.checkpoint import model_format
    from yoloslim.errors import YoloslimError

    rows = []
    for fmt in dict.fromkeys(model_format(p) for p in artifacts):
        if fmt == model_format(model):
            continue
        out = Path(ctx.run_dir) / "00_original" / f"original.{fmt}"
        try:
            path = out if out.is_file() else ctx.export(model, fmt, out, imgsz=ctx.imgsz)
        except YoloslimError as e:
            LOGGER.warning("no %s baseline of the original (%s); %s rows are compared with the .pt", fmt, e, fmt)
            continue
        rows.append((f"original ({fmt} fp32)", Path(path)))
    return rows


def runtime_opener(pm: PluginManager) -> Any:
    """The measurement harness's ``runtime_opener``: asks the plugins' ``yoloslim_open_runtime`` first."""

    def opener(path: str | Path, threads: int) -> Any:
        return pm.call("yoloslim_open_runtime", path=Path(path), threads=threads, device="cpu")

    return opener


def measure_models(
    models: list[str | Path],
    data: str | Path,
    imgsz: int | None = None,
    split: str | None = None,
    threads: int = 2,
    runs: int = 50,
    json_path: str | Path | None = None,
    plugins: PluginManager | None = None,
    reference: str | Path | None = None,
    trust: bool | None = None,
) -> list[Measurement]:
    """Measure models with the one harness, plugins' runtimes included (the API of ``yoloslim measure``).

    On a split without labels there is no mAP: every model gets its agreement with ``reference`` (default: the
    first model, the FP32 original) instead. A ``reference`` given on a labelled split adds agreement to the mAP.

    The options and the dataset are checked before any model is measured (``yoloslim.dataset``): threads
    and runs >= 1, the split defined by the YAML, imgsz > 0 and a multiple of every model's stride, every label
    file and image of the split, and every model's classes against the dataset's. ``trust``: unpickle ``.pt`` files
    without the safe-load allowlist (``None``: ``YOLOSLIM_TRUST_CHECKPOINTS``; see :mod:`yoloslim.trust`).

    Raises:
        DataError: For a bad option, dataset, label file or image, or a model with other classes.
        ModelError: For a missing or unloadable model, or one that is not a detection model.
    """
    pm = plugins or get_plugin_manager()
    with trust_scope(trust, pm):
        return _measure_models(list(models), data, imgsz, split, threads, runs, json_path, pm, reference)


def _measure_models(
    models: list[str | Path],
    data: str | Path,
    imgsz: int | None,
    split: str | None,
    threads: int,
    runs: int,
    json_path: str | Path | None,
    pm: PluginManager,
    reference: str | Path | None,
) -> list[Measurement]:
    from yoloslim.measurement import write_json

    check_threads(threads)
    check_runs(runs)
    data_dict = check_dataset(data)
    split = check_split(data_dict, default_split(data_dict, split), data)
    imgsz = imgsz if imgsz is not None else model_imgsz(models[0])
    labelled = has_labels(data_dict, split)  # imgsz, labels, images and classes: checked by measure() up front
    if not labelled and reference is None:
        reference = models[0]
        LOGGER.info("the '%s' split has no labels: measuring agreement with %s, not mAP", split, reference)
    results = measure(
        list(models),
        data,
        imgsz=imgsz,
        split=split,
        threads=threads,
        runs=runs,
        runtime_opener=runtime_opener(pm),
        accuracy=labelled,
        reference=reference,
    )
    if json_path:
        write_json(results, json_path)
    return results
