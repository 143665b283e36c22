"""Train the bundled baselines from scratch on the synthetic shapes dataset, on CPU, offline.

A YOLOv8s teacher and a YOLOv8n student are built from their YAMLs (no pretrained weights) and
trained with plain Ultralytics training; optional further stages (``--finetune-epochs``, then
``--polish-epochs``) each continue from the previous stage's best.pt with a low-LR cosine cycle. The
final ``best.pt`` of each model (Ultralytics strips it to FP16) is copied to
``weights/teacher_yolov8s.pt`` and ``weights/student_yolov8n.pt``, with the chain of runs recorded in
it (``yoloslim_training``).

Usage (both in one process, one after the other)::

    nohup .venv/bin/python research/train_baselines.py \
        > weights/logs/train_baselines.log 2>&1 &

weights/README.md gives the commands that produced the bundled weights (two processes side by side,
``--share-cpu-with``). Rerunning a command resumes an interrupted run from its ``last.pt`` and
skips runs that already finished.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Offline before ultralytics is imported: no downloads, no pip installs at run time.
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".yolo_config"))
os.environ.setdefault("MPLCONFIGDIR", "/tmp/mpl")

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

from yoloslim.testing.synth_shapes import generate  # noqa: E402

LOGGER = logging.getLogger("yoloslim.research.train_baselines")

MODELS = {
    "student": ("yolov8n.yaml", "student_yolov8n.pt"),
    "teacher": ("yolov8s.yaml", "teacher_yolov8s.pt"),
}


def use_threads(n: int, shared_until: Path | None = None) -> Callable[[object], None]:
    """Return a callback that sets torch's intra-op threads.

    Ultralytics' ``select_device('cpu')`` sets ``min(8, cpu_count - 1)`` threads (1 on a 2-core
    machine) when the trainer and the validator are built; the callbacks run after that. While the
    file ``shared_until`` does not exist yet (another run training beside this one), use 1 thread:
    two single-threaded runs share 2 cores without OpenMP threads waiting on each other.
    """

    def callback(_obj) -> None:
        threads = 1 if shared_until is not None and not shared_until.exists() else n
        if torch.get_num_threads() != threads:
            LOGGER.info("torch threads: %d", threads)
            torch.set_num_threads(threads)

    return callback


def _train_stage(name: str, init: str, overrides: dict, args: argparse.Namespace, shared_until: Path | None) -> Path:
    """Train (or resume, or skip when finished) one run ``runs/.../<name>``; returns its best.pt."""
    project = Path(args.project).resolve()
    run_dir = project / name
    last = run_dir / "weights" / "last.pt"
    best = run_dir / "weights" / "best.pt"
    done_flag = run_dir / "DONE"
    if done_flag.exists() and best.exists():
        LOGGER.info("%s: run already finished, skipping training", name)
        return best
    if last.exists():
        LOGGER.info("%s: resuming from %s", name, last)
        model = YOLO(str(last))
        train_kwargs = {"resume": True}
    else:
        model = YOLO(init)
        train_kwargs = dict(
            imgsz=args.imgsz,
            batch=args.batch,
            nbs=args.nbs,
            optimizer="AdamW",
            cos_lr=True,
            device="cpu",
            workers=0,
            seed=args.seed,
            deterministic=True,
            plots=False,
            mosaic=0.0,
            close_mosaic=0,
            fraction=args.fraction,
            project=str(project),
            name=name,
            exist_ok=True,
            verbose=True,
            **overrides,
        )
        train_kwargs["patience"] = train_kwargs["epochs"]
    for event in ("on_pretrain_routine_end", "on_train_start", "on_train_epoch_start", "on_val_start"):
        model.add_callback(event, use_threads(args.threads, shared_until))
    t0 = time.time()
    model.train(**train_kwargs)
    LOGGER.info("%s: training took %.1f min", name, (time.time() - t0) / 60)
    done_flag.write_text("done\n")
    return best


def train_one(role: str, data: Path, args: argparse.Namespace) -> Path:
    """Train one baseline (stage 1, then the optional later stages) and copy its final best.pt into weights/."""
    cfg, target = MODELS[role]
    project = Path(args.project).resolve()
    # <role>.finished marks a model whose whole chain of runs is done (the other model may have more or fewer runs).
    finished = project / f"{role}.finished"
    finished.unlink(missing_ok=True)
    shared_until = project / f"{args.share_cpu_with}.finished" if args.share_cpu_with else None
    best = _train_stage(role, cfg, dict(data=str(data), epochs=args.epochs, lr0=args.lr0), args, shared_until)
    stages = [{"run": role, "epochs": args.epochs, "lr0": args.lr0}]
    if args.finetune_epochs:
        # Stage 2: continue from stage 1's best at a low, annealed learning rate, without warmup.
        stage2 = dict(data=str(data), epochs=args.finetune_epochs, lr0=args.finetune_lr0, warmup_epochs=0.0)
        best = _train_stage(f"{role}_ft", str(best), stage2, args, shared_until)
        stages.append({"run": f"{role}_ft", "epochs": args.finetune_epochs, "lr0": args.finetune_lr0})
        # Stages 3, 4, ...: further low-LR cosine cycles, each from the previous stage's best, until the last
        # epochs show the plateau.
        if len(args.polish_lr0) != len(args.polish_epochs):
            raise SystemExit("--polish-epochs and --polish-lr0 need the same number of values")
        for k, (epochs, lr0) in enumerate(zip(args.polish_epochs, args.polish_lr0), start=2):
            stage = dict(data=str(data), epochs=epochs, lr0=lr0, warmup_epochs=0.0)
            best = _train_stage(f"{role}_ft{k}", str(best), stage, args, shared_until)
            stages.append({"run": f"{role}_ft{k}", "epochs": epochs, "lr0": lr0})
    dest = Path(args.weights_dir).resolve() / target
    tmp = dest.with_suffix(".pt.tmp")
    # The checkpoint as Ultralytics wrote it, plus the chain of runs behind it: a resumed run records only its own
    # last.pt as its model, so the chain cannot be recovered from train_args (bench/prune.py's budget reads it).
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    ckpt["yoloslim_training"] = {"stages": stages, "epochs": sum(st["epochs"] for st in stages)}
    torch.save(ckpt, tmp)
    os.replace(tmp, dest)
    LOGGER.info(
        "%s: copied %s -> %s (%d epochs in %d runs)", role, best, dest, ckpt["yoloslim_training"]["epochs"], len(stages)
    )
    finished.parent.mkdir(parents=True, exist_ok=True)
    finished.write_text(f"{dest}\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Train the yoloslim baseline teacher and student.")
    parser.add_argument("--models", nargs="+", default=["student", "teacher"], choices=sorted(MODELS))
    parser.add_argument("--variant", default="full")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--nbs", type=int, default=8, help="nominal batch size; = --batch means one optimizer step per batch"
    )
    parser.add_argument("--lr0", type=float, default=0.001, help="AdamW learning rate")
    parser.add_argument(
        "--finetune-epochs", type=int, default=15, help="stage 2: epochs of low-LR training from stage 1's best"
    )
    parser.add_argument("--finetune-lr0", type=float, default=0.0001, help="stage 2 AdamW learning rate")
    parser.add_argument(
        "--polish-epochs",
        type=int,
        nargs="*",
        default=[],
        help="stages 3, 4, ...: epochs of further low-LR cycles, each from the previous stage's best",
    )
    parser.add_argument(
        "--polish-lr0", type=float, nargs="*", default=[], help="AdamW learning rate of each such stage"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--share-cpu-with",
        choices=sorted(MODELS),
        help="use 1 thread until this other run (training in parallel) has finished, then --threads",
    )
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the train split (pilots)")
    parser.add_argument("--project", default=str(ROOT / "runs" / "baselines"))
    parser.add_argument("--weights-dir", default=str(ROOT / "weights"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    data = generate(ROOT / "datasets" / "generated" / args.variant, args.variant, args.data_seed)
    for role in args.models:
        train_one(role, data, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
