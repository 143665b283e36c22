"""Reference benchmark: the bundled teacher (YOLOv8s) and student (YOLOv8n).

Measures params, GFLOPs, size and mAP on the test split of the bundled dataset at the training
size (checkpoint and its ONNX export side by side, so the one harness shows they agree), and the
CPU latency of FP32 ONNX at 320 and 640 px with 1 and 2 threads. Every later benchmark compares
to these rows. Run: ``.venv/bin/python bench/baselines.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse

from runner import STUDENT, TEACHER, WORK, bundled_data, export_onnx, measure_rows, setup_logging, write_results

from yoloslim.pipeline import model_imgsz


def main() -> None:
    """Run the benchmark and write bench/results/baselines.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model and setting")
    a = ap.parse_args()
    setup_logging()
    data = bundled_data()
    work = WORK / "baselines"
    work.mkdir(parents=True, exist_ok=True)
    train_size = model_imgsz(STUDENT)
    models = {"teacher": TEACHER, "student": STUDENT}

    sections = {}
    rows = []
    for name, ckpt in models.items():
        rows += [(f"{name} pt", ckpt), (f"{name} onnx", export_onnx(ckpt, train_size, work))]
    sections[f"accuracy on test @ {train_size}"] = measure_rows(
        rows, data, imgsz=train_size, split="test", latency=False
    )
    for imgsz in (320, 640):
        onnx = [(f"{name} onnx", export_onnx(ckpt, imgsz, work)) for name, ckpt in models.items()]
        for threads in (1, 2):
            sections[f"FP32 ONNX latency @ {imgsz}, {threads} thread(s)"] = measure_rows(
                onnx, None, imgsz=imgsz, accuracy=False, threads=threads, runs=a.runs, warmup=20
            )

    acc = {m.name: m for m in sections[f"accuracy on test @ {train_size}"]}
    gap = acc["teacher pt"].map50_95 - acc["student pt"].map50_95
    notes = [
        f"teacher - student mAP50-95 on test: {gap * 100:+.1f} points",
        "pt vs onnx mAP50-95 difference: "
        + ", ".join(f"{n} {abs(acc[f'{n} pt'].map50_95 - acc[f'{n} onnx'].map50_95):.4f}" for n in models),
        "latency: batch 1, one real test image letterboxed, warm-up then timed runs, "
        "models of one table interleaved round-robin",
    ]
    js, md = write_results(
        "baselines",
        sections,
        {"dataset": str(data.parent.name), "train_imgsz": train_size, "teacher": TEACHER.name, "student": STUDENT.name},
        notes,
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
