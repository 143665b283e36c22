"""What a teacher at a larger input size would cost the pruned student's distillation (issue 13, item 2).

Distilling the 50 %-MACs pruned student with ``logit,ld`` (``final_weight: 0``) costs 1.49x plain fine-tuning per
epoch with the teacher (bundled YOLOv8s) at the student's 256 px; the target allows 1.6x. A teacher that sees the
batch at a larger size (its stride-16/32 maps at 512 px line up with the student's stride-8/16 maps at 256 px) runs
a forward pass on 1.6-4x the pixels. This script measures, in one process and interleaved:

- one training epoch of ``pruned-ft`` (plain fine-tuning) and of ``pruned-kd-decay-head`` (``logit,ld``, teacher at
  256 px) on the same images, through ``bench/distill.py``'s timing path (the sweep's arguments);
- the teacher's forward pass alone (its precision policy, batch 8) at 256, 320, 384 and 512 px,

and predicts each size's epoch time as the measured distillation epoch with the 256 px teacher forward replaced by
the larger one. The prediction leaves out the work to map the teacher's larger maps onto the student's, so it is a
lower bound.

Run from the repository root after ``make data``:
``.venv/bin/python research/teacher_input_cost.py --rounds 2 --fraction 0.3 --threads 1``.
Writes ``bench/results/recovery-teacher-imgsz.json`` and prints one line per size. Measured 2026-12-03
(bench/results/recovery.md's notes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "plugins"))

import distill as bench  # noqa: E402  (bench/distill.py)
from runner import RESULTS, STUDENT, TEACHER, WORK, bundled_data, setup_logging  # noqa: E402

from yoloslim.files import atomic_write_json  # noqa: E402

SIZES = (256, 320, 384, 512)
ROWS = ("pruned-ft", "pruned-kd-decay-head")


def teacher_forward_seconds(teacher_path: Path, sizes: tuple[int, ...], batches: int, rounds: int) -> dict[int, float]:
    """Median over ``rounds`` of the time ``batches`` teacher forward passes (batch 8) take at each size."""
    from yoloslim_distill.teacher import Teacher

    teacher = Teacher.load(teacher_path).to("cpu")  # picks the precision the stage uses (bf16 where native)
    times: dict[int, list[float]] = {s: [] for s in sizes}
    gen = torch.Generator().manual_seed(0)
    for _ in range(rounds):
        for s in sizes:
            img = torch.rand(8, 3, s, s, generator=gen)
            teacher(img)  # warm-up of this shape
            t0 = time.perf_counter()
            for _ in range(batches):
                teacher(img)
            times[s].append(time.perf_counter() - t0)
    return {s: statistics.median(v) for s, v in times.items()}


def main() -> None:
    """Time the rows and the teacher, print the predicted ratios and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.3, help="fraction of the train split per timed epoch")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    setup_logging()
    os.environ["YOLOSLIM_THREADS"] = str(a.threads)  # the trainer's threads (it would otherwise take every core)
    torch.set_num_threads(a.threads)
    args = argparse.Namespace(
        data=bundled_data("full"),
        epochs=30,
        imgsz=256,
        fraction=1.0,
        warmup=1.0,
        teacher=TEACHER,
        student=STUDENT,
        threads=a.threads,
        name="recovery-distill",
    )
    bench.ROWS["pruned-kd-decay-head"] = {
        "kind": "pruned",
        "method": "logit,ld",
        "weights": None,
        "options": {"final_weight": 0},
    }
    bench.prepare(args, list(ROWS))
    timing = bench.run_timing(args, list(ROWS), a.rounds, a.fraction)
    images = timing["images_per_epoch"]
    batches = -(-images // 8)
    torch.set_num_threads(a.threads)
    fwd = teacher_forward_seconds(WORK / args.name / "teacher.pt", SIZES, batches, a.rounds)
    plain, kd = timing["median_s"]["pruned-ft"], timing["median_s"]["pruned-kd-decay-head"]
    predicted = {s: (kd - fwd[256] + fwd[s]) / plain for s in SIZES}
    payload = {
        "images_per_epoch": images,
        "batches_of_8": batches,
        "threads": a.threads,
        "rounds": a.rounds,
        "epoch_s": {"pruned-ft": plain, "pruned-kd-decay-head (teacher at 256)": kd},
        "measured_ratio_teacher_256": kd / plain,
        "teacher_forward_s_per_epoch": fwd,
        "predicted_ratio_vs_plain": predicted,
        "target_ratio": 1.6,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_json(RESULTS / "recovery-teacher-imgsz.json", payload)
    print(f"plain {plain:.1f} s/epoch, distill (teacher at 256) {kd:.1f} s = {kd / plain:.2f}x ({images} images)")
    for s in SIZES:
        print(f"teacher at {s}: forward {fwd[s]:.1f} s/epoch, predicted epoch {predicted[s]:.2f}x plain (<= 1.6x)")


if __name__ == "__main__":
    main()
