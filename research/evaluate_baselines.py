"""Measure the bundled baselines on the val and test splits of the synthetic shapes dataset.

Each checkpoint is loaded with plain ``YOLO(path)`` and validated with Ultralytics' own validator::

    YOLO(path).val(data=data_yaml, split=split, imgsz=256, batch=16, device="cpu", plots=False, rect=False)

Usage::

    .venv/bin/python research/evaluate_baselines.py  # prints a table, writes weights/baseline_metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".yolo_config"))
os.environ.setdefault("MPLCONFIGDIR", "/tmp/mpl")

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

CHECKPOINTS = {"teacher": "teacher_yolov8s.pt", "student": "student_yolov8n.pt"}


def evaluate(path: Path, data: Path, split: str, imgsz: int, threads: int) -> dict[str, float]:
    """Validate one checkpoint on one split; returns mAP50 and mAP50-95."""
    model = YOLO(str(path))
    # select_device('cpu') inside the validator sets 1 thread on a 2-core machine; undo it.
    model.add_callback("on_val_start", lambda _v: torch.set_num_threads(threads))
    metrics = model.val(
        data=str(data), split=split, imgsz=imgsz, batch=16, device="cpu", plots=False, rect=False, verbose=False
    )
    return {"mAP50": float(metrics.box.map50), "mAP50-95": float(metrics.box.map)}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Measure the bundled baselines on val and test.")
    parser.add_argument("--data", default=str(ROOT / "datasets" / "generated" / "full" / "data.yaml"))
    parser.add_argument("--models", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "weights" / "baseline_metrics.json"))
    args = parser.parse_args(argv)

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}  # keep models measured earlier
    for role in args.models:
        path = ROOT / "weights" / CHECKPOINTS[role]
        results[role] = {
            split: evaluate(path, Path(args.data), split, args.imgsz, args.threads) for split in ("val", "test")
        }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)

    print("| model | val mAP50 | val mAP50-95 | test mAP50 | test mAP50-95 |")
    print("|---|---:|---:|---:|---:|")
    for role, r in results.items():
        print(
            f"| {role} ({CHECKPOINTS[role]}) | {r['val']['mAP50']:.4f} | {r['val']['mAP50-95']:.4f} "
            f"| {r['test']['mAP50']:.4f} | {r['test']['mAP50-95']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
