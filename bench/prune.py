"""Pruning benchmark: channel-prune the bundled YOLOv8n student to <= 50% of its MACs and fine-tune briefly.

In one run, with the one measurement harness:

- the original student;
- ``uniform-l2``: the Torch-Pruning YOLOv8 example's choice (uniform per-layer ratio, L2 magnitude), to the same
  MACs target;
- ``best``: this plugin's chosen setting (see ``SETTINGS``);
- optionally ``original+ft``: the unpruned student fine-tuned with the same budget, to separate the effect of
  the extra epochs from the effect of pruning.

Each pruned model is fine-tuned for at most 30% of the epochs the student was trained with. Rows: params,
GFLOPs, file size and mAP50-95 on the test split at the training size, then FP32 ONNX CPU latency at 640 px
with 2 threads, models interleaved. Targets: latency <= 0.55x the original, mAP50-95 >= 97% of the original.

Run: ``nice .venv/bin/python bench/prune.py`` (``--smoke`` runs the whole path on the tiny dataset in a minute).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from runner import STUDENT, WORK, bundled_data, export_onnx, measure_rows, setup_logging, write_results

LOGGER = logging.getLogger("yoloslim.bench.prune")

FINETUNE_SHARE = 0.30
TARGET_MACS = 0.5
LATENCY_TARGET = 0.55
MAP_TARGET = 0.97
FINETUNE_LR0 = 0.0005  # half the student's from-scratch AdamW lr: pruning moves the model far from its optimum

# Options of the 'prune' stage per setting; every setting prunes to the same MACs target.
SETTINGS: dict[str, dict[str, Any]] = {
    # Chosen on the student before fine-tuning (detection loss on 32 training images right after pruning to 50%
    # MACs: uniform L2 11.9, global L2 11.5, uniform Taylor 5.8, global Taylor with multiples of 8: 5.5; original 3.2).
    "best": {
        "method": "channel",
        "importance": "taylor",
        "global_pruning": True,
        "round_to": 8,
        "max_layer_ratio": 0.75,
        "allocation": "torch-pruning",
    },
    "uniform-l2": {"method": "channel", "importance": "l2", "global_pruning": False, "allocation": "torch-pruning"},
}


def student_epochs(checkpoint: Path) -> int:
    """Epochs behind a checkpoint: its ``train_args.epochs``, plus those of the checkpoint it started from, if present.

    The bundled student is trained in several runs (from scratch, then low-lr runs each from the previous run's
    best.pt); all count. ``research/train_baselines.py`` records the chain in the checkpoint
    (``yoloslim_training``); otherwise the chain is followed through ``train_args.model``. A run that was
    interrupted and resumed records its own ``last.pt`` as its model, so the runs before it cannot be found: the
    count then stops there, with a warning (pass ``--trained-epochs``).
    """
    from yoloslim.checkpoint import load_checkpoint

    total, runs = 0, set()  # one count per training run
    path: Path | None = checkpoint
    while path is not None and path.is_file() and path.resolve().parent not in runs:
        runs.add(path.resolve().parent)
        ckpt = load_checkpoint(path)[1]
        recorded = (ckpt.get("yoloslim_training") or {}).get("epochs")
        if recorded:  # the whole chain behind this file, written by research/train_baselines.py
            return total + int(recorded)
        ta = ckpt.get("train_args") or {}
        total += int(ta.get("epochs") or 0)
        parent = ta.get("model")
        path = Path(parent) if isinstance(parent, str) and parent.endswith(".pt") else None
    if path is not None and path.is_file() and ta.get("resume"):
        LOGGER.warning(
            "%s: run %s was resumed, the runs before it are unknown; %d epochs is a lower bound "
            "(pass --trained-epochs)",
            checkpoint,
            path.resolve().parent.parent,
            total,
        )
    return total


def finetune_args(checkpoint: Path) -> dict[str, Any]:
    """Ultralytics fine-tuning arguments: the student's own recipe (optimizer, batch, augmentation), FINETUNE_LR0."""
    from yoloslim.checkpoint import load_checkpoint

    _, ckpt = load_checkpoint(checkpoint)
    ta = ckpt.get("train_args") or {}
    keep = ("batch", "nbs", "optimizer", "mosaic", "close_mosaic", "cos_lr")
    args = {k: ta[k] for k in keep if k in ta}
    args.update(lr0=FINETUNE_LR0, warmup_epochs=0.5, plots=False, workers=0)
    return args


def run_setting(
    name: str,
    options: dict[str, Any],
    checkpoint: Path,
    data: Path,
    imgsz: int,
    epochs: int,
    train: dict[str, Any],
    work: Path,
) -> tuple[Path, float]:
    """Prune (or only fine-tune, for an empty ``options``) and fine-tune; returns the checkpoint and seconds taken."""
    from yoloslim.context import SlimContext
    from yoloslim.pipeline import run_stage
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe

    pm = get_plugin_manager()
    stage = {"type": "prune", "target_macs": TARGET_MACS, **options} if options else {"type": "finetune"}
    plain = re.sub(r"[^A-Za-z0-9_-]", "-", name)  # a recipe name is a plain name ('original+ft' -> 'original-ft')
    recipe = parse_recipe({"name": plain, "train": train, "stages": [{**stage, "epochs": epochs}]}, pm.stage_types())
    run_dir = work / name
    ctx = SlimContext(run_dir=run_dir.resolve(), data=str(data.resolve()), imgsz=imgsz, plugins=pm)
    st = recipe.stages[0]
    ctx.stage, ctx.stage_dir = st, run_dir / f"01_{name}"
    t0 = time.time()
    out = run_stage(st, checkpoint, ctx)
    return out, time.time() - t0


def main() -> None:
    """Run the benchmark and write bench/results/prune.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=STUDENT, help="checkpoint to prune (default: bundled student)")
    ap.add_argument("--data", type=Path, help="dataset YAML (default: the bundled full dataset)")
    ap.add_argument("--epochs", type=int, help="fine-tune epochs (default: 30%% of the student's training epochs)")
    ap.add_argument("--trained-epochs", type=int, help="the student's training epochs (default: from its checkpoints)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), help="settings to run")
    ap.add_argument("--control", action="store_true", help="also fine-tune the unpruned student with the same budget")
    ap.add_argument("--latency-imgsz", type=int, default=640)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model")
    ap.add_argument("--name", default="prune", help="results name (bench/results/<name>.json)")
    ap.add_argument("--reuse", action="store_true", help="measure a setting's existing output instead of re-running it")
    ap.add_argument("--smoke", action="store_true", help="tiny dataset, 1 epoch, 64 px: checks the path only")
    a = ap.parse_args()
    setup_logging()

    data = a.data or bundled_data("tiny" if a.smoke else "full")
    from yoloslim.pipeline import model_imgsz

    imgsz = 64 if a.smoke else model_imgsz(a.student)
    trained = a.trained_epochs or student_epochs(a.student)
    budget = max(1, math.floor(FINETUNE_SHARE * trained)) if trained else 1
    epochs = a.epochs if a.epochs is not None else (1 if a.smoke else budget)
    if trained and epochs > budget:
        raise SystemExit(f"--epochs {epochs} exceeds the budget of {budget} (30% of {trained} training epochs)")
    latency_imgsz = 64 if a.smoke else a.latency_imgsz
    runs = 3 if a.smoke else a.runs
    work = WORK / a.name
    work.mkdir(parents=True, exist_ok=True)
    train = finetune_args(a.student)
    if a.smoke:
        train.update(batch=8)

    rows: list[tuple[str, Path]] = [("original", a.student)]
    seconds: dict[str, float] = {}
    runs_to_do = {n: SETTINGS[n] for n in a.settings}
    if a.control:
        runs_to_do["original+ft"] = {}
    for name, options in runs_to_do.items():
        done = work / name / f"01_{name}" / f"{'prune' if options else 'finetune'}.pt"
        if a.reuse and done.is_file():
            LOGGER.info("setting %s: reusing %s", name, done)
            rows.append((name, done))
            continue
        LOGGER.info("setting %s: %s, %d fine-tune epochs", name, options or "no pruning", epochs)
        out, secs = run_setting(name, options, a.student, data, imgsz, epochs, train, work)
        rows.append((name, out))
        seconds[name] = round(secs, 1)

    sections = {f"accuracy on test @ {imgsz}": measure_rows(rows, data, imgsz=imgsz, split="test", latency=False)}
    onnx = [(name, export_onnx(path, latency_imgsz, work / name)) for name, path in rows]
    sections[f"FP32 ONNX latency @ {latency_imgsz}, 2 threads"] = measure_rows(
        onnx, None, imgsz=latency_imgsz, accuracy=False, threads=2, runs=runs, warmup=20 if not a.smoke else 2
    )

    acc = {m.name: m for m in sections[f"accuracy on test @ {imgsz}"]}
    lat = {m.name: m for m in sections[f"FP32 ONNX latency @ {latency_imgsz}, 2 threads"]}
    base_acc, base_lat = acc["original"], lat["original"]
    notes = []
    for name in runs_to_do:
        macs = acc[name].gflops / base_acc.gflops if base_acc.gflops else float("nan")
        lr = lat[name].latency_p50_ms / base_lat.latency_p50_ms
        mr = acc[name].map50_95 / base_acc.map50_95 if base_acc.map50_95 else float("nan")
        verdict = (
            f"latency {'meets' if lr <= LATENCY_TARGET else 'misses'} <= {LATENCY_TARGET}x, "
            f"mAP50-95 {'meets' if mr >= MAP_TARGET else 'misses'} >= {MAP_TARGET:.0%}"
        )
        notes.append(
            f"{name}: GFLOPs {macs:.3f}x, ONNX p50 latency {lr:.3f}x, mAP50-95 {mr:.3f}x of the original "
            f"({acc[name].map50_95:.4f} vs {base_acc.map50_95:.4f}); {verdict}"
            + (f"; prune + fine-tune took {seconds[name]:.0f} s" if name in seconds else "")
        )
    notes.append(
        f"fine-tune budget: {epochs} epochs (student trained {trained}; 30% = {budget}); fine-tune args: {train}"
    )
    notes.append("latency: batch 1, one real image letterboxed, warm-up then timed runs interleaved round-robin")
    meta = {
        "dataset": data.parent.name,
        "train_imgsz": imgsz,
        "student": a.student.name,
        "target_macs": TARGET_MACS,
        "finetune_epochs": epochs,
        "settings": {n: {"target_macs": TARGET_MACS, **o} if o else "finetune only" for n, o in runs_to_do.items()},
    }
    js, md = write_results(a.name, sections, meta, notes)
    print(md.read_text())


if __name__ == "__main__":
    main()
