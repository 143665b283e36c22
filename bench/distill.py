"""Distillation benchmark: a YOLOv8n student from its YAML (random init) trained with and without a YOLOv8s teacher.

Every row trains the same student with the same data, epochs, seeds and Ultralytics arguments; only the
distillation differs:

- ``no-distill``: plain training (SlimTrainer with no stage: Ultralytics' loop and loss);
- ``ultralytics-dis``: Ultralytics' built-in ``distill_model=<teacher>`` with its default ``dis`` (6.0);
- ``best``: the combination chosen before the sweep (see ``BEST``);
- ``logit``, ``ld``, ``cwd``, ``mgd``, ``sl2``: one ``distill`` method each, at its default weight;
- optionally ``pruned-ft`` / ``pruned-distill`` / ``pruned-ultralytics-dis``: the bundled student channel-pruned to
  50% MACs (the demo recipe's ``prune`` stage), fine-tuned without distillation, with yoloslim's, and with
  Ultralytics' ``distill_model=``.

Reported per row: mAP50-95 on the test split (mean and spread over seeds, measured by yoloslim's harness on the
final ``last.pt``), training seconds per epoch (training only, from Ultralytics' epoch callbacks) and per epoch
with validation (training plus one validation pass of the val split, measured on the final epoch), and both as
a ratio to ``no-distill``.

The sweep is incremental: every (row, seed) job runs in its own process (``--job``) and writes
``runs/bench/distill/<row>-s<seed>/result.json`` when it finishes; a rerun skips finished jobs, and
``bench/results/distill.{json,md}`` are rewritten after each one. ``--parallel 2`` runs two jobs side by side,
each with ``--threads`` torch threads.

Run: ``nohup .venv/bin/python bench/distill.py --parallel 2 > bench/results/logs/distill.log 2>&1 &``
(``--smoke`` runs every row for one epoch on the tiny dataset at 64 px). ``--extra NAME=METHODS[/WEIGHTS[/OPTIONS]]``
adds a row (pass it to every later call, ``--summarize`` included; a NAME starting with ``pruned-`` trains the
pruned student); ``--timing ROUNDS`` times one short epoch
of every row in one process, rows interleaved, for a training-cost ratio free of what runs beside the sweep.
The committed results came from the sweep above, then ``--rows val-top2 --extra val-top2=ld,cwd --parallel 1``,
then ``--timing 2 --timing-fraction 0.15 --extra val-top2=ld,cwd`` and a final ``--summarize`` with the notes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from runner import RESULTS, ROOT, STUDENT, TEACHER, WORK, bundled_data, setup_logging

from yoloslim.files import atomic_write_json, atomic_write_text

LOGGER = logging.getLogger("yoloslim.bench.distill")

# The combination for ``best`` is fixed before the sweep: the two head methods plus channel-wise feature
# distillation (the plugin's default methods).
BEST = "logit,ld,cwd"
ROWS: dict[str, dict[str, Any]] = {
    "no-distill": {"kind": "plain"},
    "ultralytics-dis": {"kind": "ultralytics"},
    "best": {"kind": "distill", "method": BEST},
    "logit": {"kind": "distill", "method": "logit"},
    "ld": {"kind": "distill", "method": "ld"},
    "cwd": {"kind": "distill", "method": "cwd"},
    "mgd": {"kind": "distill", "method": "mgd"},
    "sl2": {"kind": "distill", "method": "sl2"},
    "pruned-ft": {"kind": "pruned", "method": None},
    "pruned-distill": {"kind": "pruned", "method": BEST},
    # Ultralytics' built-in feature distillation (``distill_model=``, default ``dis``) on the same pruned student.
    "pruned-ultralytics-dis": {"kind": "pruned", "method": None, "ultralytics": True},
}
PRUNE = {
    "method": "channel",
    "target_macs": 0.5,
    "importance": "taylor",
    "global_pruning": True,
    "round_to": 8,
    "max_layer_ratio": 0.75,
    "allocation": "torch-pruning",
}  # recipes/demo.yaml's prune stage
PRUNED_LR0 = 0.0005  # as the demo recipe: the pruned student starts from trained weights


def train_args(a: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Ultralytics arguments shared by every row (the bundled baselines' recipe, see weights/README.md)."""
    return {
        "epochs": a.epochs,
        "imgsz": a.imgsz,
        "batch": 8,
        "nbs": 8,
        "optimizer": "AdamW",
        "lr0": 0.001,
        "cos_lr": True,
        "mosaic": 0.0,
        "close_mosaic": 0,
        "fraction": a.fraction,
        "seed": seed,
        "deterministic": True,
        "workers": 0,
        "plots": False,
        "val": False,
        "amp": False,
        "device": "cpu",
        "warmup_epochs": a.warmup,
    }


class EpochTimer:
    """Ultralytics callbacks that time each epoch's training and the validation (plus checkpoint) after it."""

    def __init__(self) -> None:
        """Start with no epochs timed."""
        self.train: list[float] = []
        self.val: list[float] = []
        self._t = 0.0

    def attach(self, trainer: Any) -> None:
        """Register the callbacks on ``trainer``."""
        trainer.add_callback("on_train_epoch_start", self._start)
        trainer.add_callback("on_train_epoch_end", self._train_end)
        trainer.add_callback("on_fit_epoch_end", self._fit_end)

    def _start(self, trainer: Any) -> None:
        self._t = time.perf_counter()

    def _train_end(self, trainer: Any) -> None:
        now = time.perf_counter()
        self.train.append(now - self._t)
        self._t = now

    def _fit_end(self, trainer: Any) -> None:
        if trainer.epoch + 1 == trainer.epochs or trainer.args.val:
            self.val.append(time.perf_counter() - self._t)


def build_trainer(a: argparse.Namespace, row: str, seed: int, work: Path, **override: Any) -> tuple[Any, EpochTimer]:
    """The SlimTrainer of one (row, seed) writing into ``work``, with an EpochTimer attached.

    ``override`` replaces shared Ultralytics arguments (the timing runs use fewer images and one epoch).
    """
    from yoloslim.context import SlimContext
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe
    from yoloslim.trainer import SlimTrainer

    spec = ROWS[row]
    data = Path(a.data)
    teacher = str(WORK / a.name / "teacher.pt")
    pm = get_plugin_manager()
    overrides = {**train_args(a, seed), "data": str(data), "project": str(work), "name": "train", "exist_ok": True}
    stage = None
    model = None
    if spec["kind"] == "pruned":
        from yoloslim.checkpoint import load_checkpoint

        model, _ = load_checkpoint(WORK / a.name / "pruned.pt")
        overrides.update(model=str(WORK / a.name / "pruned.pt"), lr0=PRUNED_LR0)
    else:
        overrides["model"] = "yolov8n.yaml"
    if spec["kind"] == "ultralytics" or spec.get("ultralytics"):
        overrides["distill_model"] = teacher
    overrides.update(override)
    if spec.get("method"):
        options = {
            "teacher": teacher,
            "method": spec["method"],
            **({"weights": spec["weights"]} if spec.get("weights") else {}),
            **spec.get("options", {}),
        }
        recipe = parse_recipe(
            {"stages": [{"type": "distill", **options, "epochs": overrides["epochs"]}]}, pm.stage_types()
        )
        stage = recipe.stages[0]
    ctx = SlimContext(
        run_dir=work.resolve(),
        data=str(data.resolve()),
        imgsz=a.imgsz,
        stage=stage,
        stage_dir=work.resolve(),
        plugins=pm,
    )
    if stage is not None and model is not None:
        model = pm.call("yoloslim_transform_model", model=model, stage=stage, ctx=ctx) or model
    trainer = SlimTrainer(overrides=overrides, model=model, ctx=ctx)
    ctx.trainer = trainer
    timer = EpochTimer()
    timer.attach(trainer)
    return trainer, timer


def run_job(a: argparse.Namespace, row: str, seed: int) -> dict[str, Any]:
    """Train one (row, seed) and measure its test mAP; returns the result record."""
    import torch

    from yoloslim.measurement import measure

    spec = ROWS[row]
    data = Path(a.data)
    work = WORK / a.name / f"{row}-s{seed}"
    if work.exists():
        shutil.rmtree(work)  # an interrupted job starts again from scratch
    work.mkdir(parents=True)
    trainer, timer = build_trainer(a, row, seed, work)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    torch.set_num_threads(a.threads)
    m = measure([trainer.last], data, imgsz=a.imgsz, split="test", latency=False, names=[row])[0]
    csv_rows = (trainer.save_dir / "results.csv").read_text().splitlines()
    header = [h.strip() for h in csv_rows[0].split(",")]
    last = dict(zip(header, (v.strip() for v in csv_rows[-1].split(","))))
    return {
        "row": row,
        "seed": seed,
        "kind": spec["kind"],
        "method": spec.get("method"),
        "test_map50_95": m.map50_95,
        "test_map50": m.map50,
        "val_map50_95_final": float(last.get("metrics/mAP50-95(B)", "nan")),
        "train_s_per_epoch": statistics.mean(timer.train),
        "train_s_epochs": [round(t, 2) for t in timer.train],
        "val_s": statistics.mean(timer.val) if timer.val else None,
        "wall_s": round(wall, 1),
        "params": m.params,
        "gflops": m.gflops,
        "loss_columns": [h for h in header if h.startswith("train/")],
        "checkpoint": str(trainer.last),
        "threads": a.threads,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def run_timing(a: argparse.Namespace, rows: list[str], rounds: int, fraction: float) -> dict[str, Any]:
    """Time one training epoch of every row in this one process, rows interleaved, ``rounds`` times.

    Each epoch trains on ``fraction`` of the train split with the sweep's arguments; the figure is the
    median over rounds of the training part of the epoch (no validation), so rows share the same CPU
    conditions, unlike the sweep's jobs, which run beside whatever else runs.
    """
    import torch

    torch.set_num_threads(a.threads)
    seconds: dict[str, list[float]] = {r: [] for r in rows}
    images = 0
    for k in range(rounds):
        for row in rows:
            work = WORK / a.name / "timing" / f"{row}-r{k}"
            shutil.rmtree(work, ignore_errors=True)
            trainer, timer = build_trainer(a, row, 0, work, epochs=1, fraction=fraction, val=False)
            trainer.train()
            images = len(trainer.train_loader.dataset)
            seconds[row].append(timer.train[0])
            LOGGER.info("timing round %d %s: %.1f s for %d images", k + 1, row, timer.train[0], images)
    med = {r: statistics.median(v) for r, v in seconds.items()}
    refs = {r: baseline(ROWS[r]["kind"]) if r in ROWS else "no-distill" for r in med}  # each row's plain row
    payload = {
        "rounds": rounds,
        "images_per_epoch": images,
        "threads": a.threads,
        "seconds": seconds,
        "median_s": med,
        "baseline": refs,
        "ratio_vs_baseline": {r: v / med[refs[r]] for r, v in med.items() if med.get(refs[r])},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_json(WORK / a.name / "timing.json", payload)
    return payload


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def prepare(a: argparse.Namespace, rows: list[str]) -> None:
    """Freeze the inputs of the sweep: a copy of the teacher (and the pruned student if a pruned row runs)."""
    base = WORK / a.name
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "teacher.pt").is_file():
        shutil.copy2(a.teacher, base / "teacher.pt")  # the bundled file may be replaced during a long sweep
    if any(ROWS[r]["kind"] == "pruned" for r in rows) and not (base / "pruned.pt").is_file():
        from yoloslim.context import SlimContext
        from yoloslim.pipeline import run_stage
        from yoloslim.plugins import get_plugin_manager
        from yoloslim.recipe import parse_recipe

        student = base / "student.pt"
        shutil.copy2(a.student, student)
        pm = get_plugin_manager()
        st = parse_recipe({"stages": [{"type": "prune", **PRUNE, "epochs": 0}]}, pm.stage_types()).stages[0]
        ctx = SlimContext(
            run_dir=base.resolve(),
            data=str(Path(a.data).resolve()),
            imgsz=a.imgsz,
            stage=st,
            stage_dir=(base / "prune").resolve(),
            plugins=pm,
        )
        shutil.copy2(run_stage(st, student, ctx), base / "pruned.pt")


def baseline(kind: str) -> str:
    """The row a row is compared with: the pruned student fine-tuned alone for pruned rows, else no-distill."""
    return "pruned-ft" if kind == "pruned" else "no-distill"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summarize(a: argparse.Namespace, rows: list[str], seeds: list[int]) -> None:
    """Write bench/results/<name>.json and .md from the finished jobs."""
    base = WORK / a.name
    results = {}
    for row in rows:
        done = [json.loads(p.read_text()) for s in seeds if (p := base / f"{row}-s{s}" / "result.json").is_file()]
        if not done:
            continue
        maps = [d["test_map50_95"] for d in done]
        train_s = statistics.mean(d["train_s_per_epoch"] for d in done)
        vals = [d["val_s"] for d in done if d["val_s"] is not None]
        results[row] = {
            "seeds": [d["seed"] for d in done],
            "test_map50_95": maps,
            "mean": statistics.mean(maps),
            "spread": (max(maps) - min(maps)) / 2,
            "stdev": statistics.stdev(maps) if len(maps) > 1 else None,
            "train_s_per_epoch": train_s,
            "train_val_s_per_epoch": train_s + statistics.mean(vals) if vals else None,
            "method": done[0]["method"],
            "weights": ROWS[row].get("weights"),
            "options": ROWS[row].get("options") or None,
            "kind": done[0]["kind"],
            "runs": done,
        }
    for r in results.values():
        r["baseline"] = baseline(r["kind"])
        ref = results.get(r["baseline"])
        r["delta_vs_baseline"] = r["mean"] - ref["mean"] if ref else None
        r["time_ratio"] = r["train_s_per_epoch"] / ref["train_s_per_epoch"] if ref else None
        r["time_ratio_with_val"] = (
            r["train_val_s_per_epoch"] / ref["train_val_s_per_epoch"]
            if ref and r["train_val_s_per_epoch"] and ref["train_val_s_per_epoch"]
            else None
        )
    missing = [f"{r}-s{s}" for r in rows for s in seeds if not (base / f"{r}-s{s}" / "result.json").is_file()]
    only_pruned = all(ROWS[r]["kind"] == "pruned" for r in rows)
    student = (
        f"{a.student} channel-pruned (recipes/demo.yaml's prune stage)"
        if only_pruned
        else "yolov8n.yaml (random init)"
        + ("" if not any(ROWS[r]["kind"] == "pruned" for r in rows) else f"; pruned rows: {a.student} channel-pruned")
    )
    meta = {
        "student": student,
        "student_sha256_16": _sha(base / "student.pt") if (base / "student.pt").is_file() else None,
        "teacher": str(a.teacher),
        "teacher_sha256_16": _sha(base / "teacher.pt") if (base / "teacher.pt").is_file() else None,
        "data": str(a.data),
        "seeds": seeds,
        "train_args": {k: v for k, v in train_args(a, seeds[0]).items() if k != "seed"},
        "threads_per_job": a.threads,
        "parallel_jobs": a.parallel,
        "best_combination": BEST,
        "rows": rows,
    }
    timing = json.loads((base / "timing.json").read_text()) if (base / "timing.json").is_file() else None
    payload = {
        "benchmark": "distill",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **meta,
        "results": results,
        "timing_interleaved": timing,
        "missing": missing,
        "notes": a.note or [],
    }
    atomic_write_json(RESULTS / f"{a.name}.json", payload)

    lines = [
        f"# Benchmark: {a.name}",
        "",
        f"Written {payload['date']}. Student: {student}, teacher `{a.teacher}`; "
        f"data `{a.data}` (fraction {a.fraction} of train), "
        f"{a.epochs} epochs at {a.imgsz} px, seeds {seeds}, {a.threads} torch thread(s) per job, "
        f"up to {a.parallel} jobs side by side. Δ (mAP50-95 points) and time ratios are against the row's "
        "baseline: `no-distill`, or `pruned-ft` for the pruned rows.",
        "",
        "| row | method | test mAP50-95 (mean ± half-range) | per seed | baseline | Δ | s/epoch train | "
        "ratio | s/epoch train+val | ratio |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for row, r in results.items():
        delta = "-" if r["delta_vs_baseline"] is None else f"{100 * r['delta_vs_baseline']:+.2f}"
        per_seed = ", ".join(f"{m:.4f}" for m in r["test_map50_95"])
        method = (r["method"] or r["kind"]) + (f" ({r['weights']})" if r["weights"] else "")
        method += f" ({', '.join(f'{k}={v}' for k, v in r['options'].items())})" if r["options"] else ""
        lines.append(
            f"| {row} | {method} | {r['mean']:.4f} ± {r['spread']:.4f} | {per_seed} | {r['baseline']} | {delta} | "
            f"{r['train_s_per_epoch']:.1f} | {_fmt(r['time_ratio'], 2)} | {_fmt(r['train_val_s_per_epoch'], 1)} | "
            f"{_fmt(r['time_ratio_with_val'], 2)} |"
        )
    lines += [
        "",
        "Times in this table are wall-clock seconds of the sweep's jobs on a shared 2-core CPU; they depend on "
        "what ran beside each job (other trainings, tests), so compare training cost with the interleaved table "
        "below. train+val adds one validation pass of the val split (measured on the final epoch).",
        "",
    ]
    if timing:
        med = timing["median_s"]
        lines += [
            "## Training time, rows interleaved in one process",
            "",
            f"One epoch of {timing['images_per_epoch']} images per row and round, {timing['rounds']} rounds, "
            f"{timing['threads']} thread(s), started on an otherwise idle machine; median seconds of the training part "
            "(no validation).",
            "",
            "| row | s/epoch | baseline | ratio |",
            "|---|---:|---|---:|",
        ]
        for r, v in med.items():
            ref = baseline(ROWS[r]["kind"]) if r in ROWS else "no-distill"
            lines.append(f"| {r} | {v:.1f} | {ref} | {_fmt(v / med[ref] if med.get(ref) else None, 2)} |")
        lines.append("")
    if missing:
        lines += [f"Missing (not finished): {', '.join(missing)}", ""]
    if a.note:
        lines += ["## Notes", ""] + [f"- {n}" for n in a.note] + [""]
    atomic_write_text(RESULTS / f"{a.name}.md", "\n".join(lines))


def main() -> None:
    """Run the sweep (or one ``--job``) and write bench/results/<name>.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", help=f"rows to run (default: all of {', '.join(ROWS)})")
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=METHODS[/WEIGHTS[/OPTIONS]]",
        help="an extra distill row, e.g. 'strong=logit,cwd/cwd=6' or 'pruned-decay=logit,ld,cwd//final_weight=0' "
        "(repeatable; pass it to reruns too; NAME pruned-*: on the pruned student)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--fraction", type=float, default=0.5, help="fraction of the train split")
    ap.add_argument("--warmup", type=float, default=1.0, help="warmup epochs")
    ap.add_argument("--data", type=Path, help="dataset YAML (default: the bundled full dataset)")
    ap.add_argument("--teacher", type=Path, default=TEACHER)
    ap.add_argument("--student", type=Path, default=STUDENT, help="trained student for the pruned rows")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("--parallel", type=int, default=2, help="jobs side by side")
    ap.add_argument("--name", default="distill", help="results name (bench/results/<name>.json)")
    ap.add_argument("--note", action="append", help="a note for the results (repeatable)")
    ap.add_argument("--job", help="run one job ROW:SEED in this process (used by the sweep)")
    ap.add_argument("--summarize", action="store_true", help="only rewrite the results from finished jobs")
    ap.add_argument(
        "--timing",
        type=int,
        metavar="ROUNDS",
        help="instead of the sweep: time one epoch of every row in one process, interleaved, ROUNDS times",
    )
    ap.add_argument("--timing-fraction", type=float, default=0.1, help="fraction of the train split per timing epoch")
    ap.add_argument("--smoke", action="store_true", help="tiny dataset, 1 epoch, 64 px: checks the path only")
    a = ap.parse_args()
    setup_logging()
    for item in a.extra:
        name, _, rest = item.partition("=")
        methods, _, rest = rest.partition("/")
        weights, _, options = rest.partition("/")
        if not name or not methods:
            raise SystemExit(f"--extra '{item}': expected NAME=METHODS[/WEIGHTS[/OPTIONS]]")
        kind = "pruned" if name.startswith("pruned-") else "distill"  # pruned-*: on the pruned student
        pairs = [kv.split("=", 1) for kv in options.split(",") if kv]
        extra = {k: yaml.safe_load(v) for k, v in pairs}  # distill stage options, e.g. final_weight=0
        ROWS[name] = {"kind": kind, "method": methods, "weights": weights or None, "options": extra}
    a.rows = a.rows or list(ROWS)
    unknown = [r for r in a.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {list(ROWS)} or define them with --extra")
    if a.smoke:
        a.epochs, a.imgsz, a.fraction, a.name = 1, 64, 1.0, f"{a.name}-smoke"
    a.data = a.data or bundled_data("tiny" if a.smoke else "full")
    os.environ["YOLOSLIM_THREADS"] = str(a.threads)

    if a.job:
        row, seed = a.job.rsplit(":", 1)
        result = run_job(a, row, int(seed))
        atomic_write_json(WORK / a.name / f"{row}-s{seed}" / "result.json", result)
        LOGGER.info(
            "job %s done: test mAP50-95 %.4f, %.1f s/epoch", a.job, result["test_map50_95"], result["train_s_per_epoch"]
        )
        return
    if a.timing:
        prepare(a, a.rows)
        run_timing(a, a.rows, a.timing, a.timing_fraction)
        summarize(a, a.rows, a.seeds)
        return
    if a.summarize:
        summarize(a, a.rows, a.seeds)
        return

    prepare(a, a.rows)
    # Every seed of the random-init rows first, then the pruned rows: the ones to drop if time runs out.
    order = [r for r in a.rows if ROWS[r]["kind"] != "pruned"], [r for r in a.rows if ROWS[r]["kind"] == "pruned"]
    jobs = [
        (r, s)
        for group in order
        for s in a.seeds
        for r in group
        if not (WORK / a.name / f"{r}-s{s}" / "result.json").is_file()
    ]
    LOGGER.info("%d jobs to run: %s", len(jobs), ", ".join(f"{r}:{s}" for r, s in jobs))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(a.threads),
        "OMP_WAIT_POLICY": "PASSIVE",
        "YOLOSLIM_THREADS": str(a.threads),
    }
    passthrough = [
        "--epochs",
        str(a.epochs),
        "--imgsz",
        str(a.imgsz),
        "--fraction",
        str(a.fraction),
        "--warmup",
        str(a.warmup),
        "--data",
        str(a.data),
        "--teacher",
        str(a.teacher),
        "--student",
        str(a.student),
        "--threads",
        str(a.threads),
        "--name",
        a.name,
        *[x for item in a.extra for x in ("--extra", item)],
    ]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running: list[tuple[str, subprocess.Popen]] = []
    while jobs or running:
        while jobs and len(running) < a.parallel:
            row, seed = jobs.pop(0)
            log = (logs / f"{a.name}-{row}-s{seed}.log").open("w")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--job", f"{row}:{seed}", *passthrough]
            LOGGER.info("start %s:%d", row, seed)
            running.append(
                (f"{row}:{seed}", subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
            )
        time.sleep(5)
        for job, proc in list(running):
            if proc.poll() is not None:
                running.remove((job, proc))
                LOGGER.info("finished %s (exit %d)", job, proc.returncode)
                summarize(a, a.rows, a.seeds)
    summarize(a, a.rows, a.seeds)


if __name__ == "__main__":
    main()
