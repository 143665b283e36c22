"""Train the bundled baselines from scratch on the synthetic shapes dataset, on CPU, offline.

A YOLOv8s teacher and a YOLOv8n student are built from their YAMLs (no pretrained weights) and
trained with plain Ultralytics training. The final ``best.pt`` of each run (Ultralytics strips it
to FP16) is copied to ``weights/teacher_yolov8s.pt`` and ``weights/student_yolov8n.pt``.

Usage (what produced the bundled weights; see weights/README.md)::

    nohup .venv/bin/python weights/train_baselines.py --models student teacher \
        > weights/logs/train_baselines.log 2>&1 &

Rerunning the same command resumes an interrupted run from its ``last.pt`` and skips a model whose
run already finished.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import time
from pathlib import Path

# Offline before ultralytics is imported: no downloads, no pip installs at run time.
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".yolo_config"))
os.environ.setdefault("MPLCONFIGDIR", "/tmp/mpl")

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

LOGGER = logging.getLogger("yoloslim.weights.train_baselines")

MODELS = {
    "student": ("yolov8n.yaml", "student_yolov8n.pt"),
    "teacher": ("yolov8s.yaml", "teacher_yolov8s.pt"),
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("synth_shapes", ROOT / "datasets" / "synth_shapes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def use_threads(n: int, shared_until: Path | None = None):
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


def train_one(role: str, data: Path, args: argparse.Namespace) -> Path:
    """Train (or resume) one baseline and copy its best.pt into weights/; returns the copy's path."""
    cfg, target = MODELS[role]
    project = Path(args.project).resolve()
    run_dir = project / role
    last = run_dir / "weights" / "last.pt"
    best = run_dir / "weights" / "best.pt"
    done_flag = run_dir / "DONE"
    if done_flag.exists() and best.exists():
        LOGGER.info("%s: run already finished, skipping training", role)
    else:
        if last.exists():
            LOGGER.info("%s: resuming from %s", role, last)
            model = YOLO(str(last))
            train_kwargs = {"resume": True}
        else:
            model = YOLO(cfg)
            train_kwargs = dict(
                data=str(data),
                epochs=args.epochs,
                imgsz=args.imgsz,
                batch=args.batch,
                nbs=args.nbs,
                optimizer="AdamW",
                lr0=args.lr0,
                cos_lr=True,
                device="cpu",
                workers=0,
                seed=args.seed,
                deterministic=True,
                plots=False,
                mosaic=0.0,
                close_mosaic=0,
                fraction=args.fraction,
                patience=args.epochs,
                project=str(project),
                name=role,
                exist_ok=True,
                verbose=True,
            )
        shared_until = project / args.share_cpu_with / "DONE" if args.share_cpu_with else None
        for event in ("on_pretrain_routine_end", "on_train_start", "on_train_epoch_start", "on_val_start"):
            model.add_callback(event, use_threads(args.threads, shared_until))
        t0 = time.time()
        model.train(**train_kwargs)
        LOGGER.info("%s: training took %.1f min", role, (time.time() - t0) / 60)
        done_flag.write_text("done\n")
    dest = Path(args.weights_dir).resolve() / target
    tmp = dest.with_suffix(".pt.tmp")
    shutil.copyfile(best, tmp)
    os.replace(tmp, dest)
    LOGGER.info("%s: copied %s -> %s", role, best, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Train the yoloslim baseline teacher and student.")
    parser.add_argument("--models", nargs="+", default=["student", "teacher"], choices=sorted(MODELS))
    parser.add_argument("--variant", default="full")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--nbs", type=int, default=8, help="nominal batch size; = --batch means one optimizer step per batch"
    )
    parser.add_argument("--lr0", type=float, default=0.001, help="AdamW learning rate")
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

    data = _load_generator().generate(ROOT / "datasets" / "generated" / args.variant, args.variant, args.data_seed)
    for role in args.models:
        train_one(role, data, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
