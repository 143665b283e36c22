"""Real-models benchmark: the official COCO YOLOv8n, YOLO11n and YOLO26n at 640 px on real photos and street video.

For each checkpoint, in one run, ONNX Runtime CPU, batch 1, 2 threads, latency interleaved across its rows:

- ``fp32``: the FP32 ONNX export (Ultralytics' exporter through the ONNX adapter);
- ``ultralytics-int8``: Ultralytics' own ``export(format="onnx", quantize=8, data=..., split="train")``, calibrated on
  the same unlabelled pool as ours;
- ``ptq-cpu``: this project's ``quantize`` stage, mode ``ptq``, target ``cpu`` (defaults), calibrated on the pool;
- ``mixed``: the same stage, mode ``mixed`` (defaults: budget 0.5 points, at most 8 float layers), scored by
  agreement on pool images calibration did not use;
- YOLO26 also in its NMS-free layout: ``fp32-e2e`` (``nms=False`` export, output ``(1, 300, 6)``) and
  ``ptq-cpu-e2e`` (``quantize --end2end``), in a section of their own: agreement with ``fp32-e2e``.

Quality is **agreement** with the FP32 ONNX (``yoloslim.agreement``): mAP50-95 and F1@0.5 of each row against the
FP32 model's own detections (conf 0.25) on the held-out real split (``datasets/real/heldout``: a later stretch of
the street film, the cyclists clip and photos, none of which calibration saw). There are no human labels.
Targets on each checkpoint: ``ptq-cpu`` >= 2.0x faster than FP32 and >= 3x faster than Ultralytics' INT8, with
agreement F1 >= 0.95 and agreement mAP50-95 >= Ultralytics' INT8's; ``mixed`` agreement mAP50-95 >= 0.90. ORT
profiles (kernel time per op type) of the FP32 and PTQ graphs explain the latencies.

Run ``make real`` first, then ``.venv/bin/python bench/real.py --phase build`` (exports, calibration; any load) and
``--phase measure`` (agreement, latency, profiles: on a quiet machine). ``--phase all`` does both.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from runner import (
    RESULTS,
    ROOT,
    WORK,
    agreement_by_scene,
    load_average,
    measure_rows,
    quant_options,
    setup_logging,
    slim_context,
    ultralytics_int8,
    write_results,
)

from yoloslim.files import atomic_write_json, atomic_write_text
from yoloslim.measurement import Measurement

LOGGER = logging.getLogger("yoloslim.bench.real")

MODELS = ("yolov8n", "yolo11n", "yolo26n")
ORDER = ["fp32", "ultralytics-int8", "ptq-cpu", "mixed"]
E2E_ORDER = ["fp32-e2e", "ptq-cpu-e2e"]  # the NMS-free layout, for checkpoints with a one-to-one head
E2E_MODELS = ("yolo26n",)
IMGSZ = 640
DATA = ROOT / "datasets" / "real" / "real.yaml"
OFFICIAL = ROOT / "weights" / "official"
TARGET_VS_FP32 = 2.0
TARGET_VS_ULTRALYTICS = 3.0
TARGET_F1 = 0.95
TARGET_MIXED_MAP = 0.90


def build(names: list[str], rebuild: list[str], work: Path) -> dict[str, Any]:
    """Build every row's file for each checkpoint; returns (and saves) the manifest the measure phase reads."""
    import onnx

    from yoloslim_quant.graph import yoloslim_metadata
    from yoloslim_quant.quantizer import quantize_checkpoint

    manifest_path = work / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    for name in names:
        pt = OFFICIAL / f"{name}.pt"
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        entry = manifest["models"].setdefault(name, {"files": {}, "seconds": {}, "notes": {}})
        ctx = slim_context(DATA, IMGSZ, folder)
        steps = {
            "fp32": lambda out: ctx.export(pt, "onnx", out, imgsz=IMGSZ),
            "ultralytics-int8": lambda out: ultralytics_int8(pt, DATA, IMGSZ, out, split="train"),
            "ptq-cpu": lambda out: quantize_checkpoint(pt, out, quant_options(), ctx, workdir=folder / "ptq_work"),
            "mixed": lambda out: quantize_checkpoint(
                pt, out, quant_options(mode="mixed"), ctx, workdir=folder / "mixed_work"
            ),
        }
        if name in E2E_MODELS:
            steps["fp32-e2e"] = lambda out: ctx.export(pt, "onnx", out, imgsz=IMGSZ, nms=False)
            steps["ptq-cpu-e2e"] = lambda out: quantize_checkpoint(
                pt, out, quant_options(end2end=True), ctx, workdir=folder / "ptq_e2e_work"
            )
        for row, make in steps.items():
            out = folder / f"{row}.onnx"
            if out.is_file() and row not in rebuild:
                LOGGER.info("%s %s: keeping %s", name, row, out)
            else:
                t0 = time.time()
                try:
                    make(out)
                except Exception as e:  # recorded, not fatal: the other rows still get measured
                    entry["notes"][row] = f"build failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                    LOGGER.exception("%s %s failed", name, row)
                    continue
                entry["seconds"][row] = round(time.time() - t0, 1)
            entry["files"][row] = str(out)
            q = yoloslim_metadata(onnx.load(str(out), load_external_data=False)).get("quantization") or {}
            if row == "mixed" and q.get("mixed"):
                entry["notes"]["mixed"] = {k: v for k, v in q["mixed"].items() if k not in ("sensitivity", "steps")}
                entry["notes"]["mixed"]["steps"] = [
                    {k: v for k, v in s.items() if k != "path"} for s in q["mixed"]["steps"]
                ]
            if q.get("agreement_with_fp32"):
                entry["notes"][f"{row} self-check"] = q["agreement_with_fp32"]
        manifest["built"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        atomic_write_json(manifest_path, manifest)
    return manifest


def measure(manifest: dict[str, Any], names: list[str], runs: int, profile_runs: int) -> dict[str, Any]:
    """Agreement on the held-out split, interleaved latency and ORT profiles for each checkpoint."""
    from profiling import profile_ops

    from yoloslim.measurement import model_input

    sections: dict[str, list[Measurement]] = {}
    profiles: dict[str, dict[str, Any]] = {}
    load = {"before": load_average()}
    image = model_input(IMGSZ, ROOT / "datasets" / "real" / "heldout" / "street_late" / "street_01500.jpg")
    for name in names:
        files = manifest["models"][name]["files"]
        rows = [(row, Path(files[row])) for row in ORDER if row in files]
        sections[name] = measure_rows(
            rows,
            DATA,
            imgsz=IMGSZ,
            split="val",
            accuracy=False,
            threads=2,
            runs=runs,
            warmup=10,
            reference=Path(files["fp32"]),
        )
        e2e = [(row, Path(files[row])) for row in E2E_ORDER if row in files]
        if len(e2e) == len(E2E_ORDER):  # the NMS-free layout against its own FP32 (the one-to-one head's boxes)
            sections[f"{name} NMS-free"] = measure_rows(
                e2e,
                DATA,
                imgsz=IMGSZ,
                split="val",
                accuracy=False,
                threads=2,
                runs=runs,
                warmup=10,
                reference=e2e[0][1],
            )
        for row in ("fp32", "ptq-cpu"):
            if row in files:
                profiles[f"{name} {row}"] = profile_ops(files[row], image, runs=profile_runs)
    load["after"] = load_average()
    by_scene = {name: scene_agreement(manifest["models"][name]["files"]) for name in names}
    return {"sections": sections, "profiles": profiles, "load": load, "by_scene": by_scene}


def scene_agreement(files: dict[str, str]) -> dict[str, dict[str, dict[str, float]]]:
    """Agreement of every quantized row per held-out scene: ``{row: {scene: {"map50_95", "f1", "images"}}}``.

    The pool is black-and-white street film and a car-phone clip; the scenes show whether calibration on it
    carries over to a later stretch of the same street, another street and colour photos.
    """
    rows = [(row, Path(files[row])) for row in ORDER[1:] if row in files]
    out = agreement_by_scene(rows, Path(files["fp32"]), DATA, IMGSZ)
    out.update({row: {} for row in E2E_ORDER[1:] if row in files})
    if all(row in files for row in E2E_ORDER):
        e2e = [(row, Path(files[row])) for row in E2E_ORDER[1:]]
        out.update(agreement_by_scene(e2e, Path(files[E2E_ORDER[0]]), DATA, IMGSZ))
    return out


def format_scenes(by_scene: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Markdown: one row per model and quantized row, agreement mAP50-95 / F1 per held-out scene."""
    scenes = sorted({s for rows in by_scene.values() for scenes in rows.values() for s in scenes})
    lines = [
        "| model | row | " + " | ".join(f"{s} mAP50-95 / F1" for s in scenes) + " |",
        "|---|---|" + "---|" * len(scenes),
    ]
    for name, rows in by_scene.items():
        for row, per in rows.items():
            cells = [f"{per[s]['map50_95']:.3f} / {per[s]['f1']:.3f}" if s in per else "-" for s in scenes]
            lines.append(f"| {name} | {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdicts(rows: list[Measurement]) -> list[str]:
    """Each target of one checkpoint: met, or missed and by how much."""
    r = {m.name: m for m in rows}
    out = []

    def verdict(ok: bool, miss: str) -> str:
        return "met" if ok else f"MISSED by {miss}"

    if "ptq-cpu" in r and "fp32" in r:
        ptq = r["ptq-cpu"]
        speed = r["fp32"].latency_p50_ms / ptq.latency_p50_ms
        out.append(
            f"ptq-cpu {speed:.2f}x faster than FP32 (target >= {TARGET_VS_FP32}x: "
            f"{verdict(speed >= TARGET_VS_FP32, f'{TARGET_VS_FP32 - speed:.2f}x')})"
        )
        f1 = ptq.agreement["f1"]
        out.append(
            f"ptq-cpu agreement F1@0.5 {f1:.4f} (target >= {TARGET_F1}: "
            f"{verdict(f1 >= TARGET_F1, f'{TARGET_F1 - f1:.4f}')})"
        )
        if "ultralytics-int8" in r:
            ult = r["ultralytics-int8"]
            speed = ult.latency_p50_ms / ptq.latency_p50_ms
            out.append(
                f"ptq-cpu {speed:.2f}x faster than Ultralytics' INT8 (target >= {TARGET_VS_ULTRALYTICS}x: "
                f"{verdict(speed >= TARGET_VS_ULTRALYTICS, f'{TARGET_VS_ULTRALYTICS - speed:.2f}x')})"
            )
            a, b = ptq.agreement["map50_95"], ult.agreement["map50_95"]
            out.append(
                f"ptq-cpu agreement mAP50-95 {a:.4f} vs Ultralytics' INT8 {b:.4f} (target >=: "
                f"{verdict(a >= b, f'{b - a:.4f}')})"
            )
    if "mixed" in r:
        a = r["mixed"].agreement["map50_95"]
        out.append(
            f"mixed agreement mAP50-95 {a:.4f} (target >= {TARGET_MIXED_MAP}: "
            f"{verdict(a >= TARGET_MIXED_MAP, f'{TARGET_MIXED_MAP - a:.4f}')})"
        )
    return out


def write(manifest: dict[str, Any], result: dict[str, Any], names: list[str]) -> None:
    """Write bench/results/real.json and .md."""
    from profiling import format_profiles

    notes = []
    for name in names:
        rows = result["sections"].get(name, [])
        notes += [f"{name}: {v}" for v in verdicts(rows)]
        e2e = {m.name: m for m in result["sections"].get(f"{name} NMS-free", [])}
        if e2e:
            fp, q = e2e["fp32-e2e"], e2e["ptq-cpu-e2e"]
            notes.append(
                f"{name} NMS-free layout (export nms=False, quantize end2end): ptq-cpu-e2e "
                f"{fp.latency_p50_ms / q.latency_p50_ms:.2f}x faster than its FP32, agreement with it "
                f"mAP50-95 {q.agreement['map50_95']:.4f}, F1@0.5 {q.agreement['f1']:.4f} (no target set)"
            )
        for key, value in manifest["models"][name]["notes"].items():
            notes.append(f"{name} {key}: {json.dumps(value, default=str)}")
        notes.append(f"{name} build seconds: {manifest['models'][name]['seconds']}")
    notes.append(
        f"load average (1/5/15 min) before the measure phase: {result['load']['before']}, after: "
        f"{result['load']['after']} (2 cores; > 0.5 means other work shared the CPU)"
    )
    notes.append(
        "agreement: every row against the FP32 ONNX's own detections at conf 0.25 on the held-out real "
        "split; the FP32 row scores 0.995 mAP50-95 (the ceiling of Ultralytics' AP interpolation) and F1 1.0 "
        "by construction. It is not accuracy: no human labels exist for these images."
    )
    meta = {
        "models": names,
        "imgsz": IMGSZ,
        "data": "datasets/real (held-out split: val)",
        "runtime": "ONNX Runtime CPU, batch 1, 2 threads, intra-op spinning off, rows of one model interleaved",
    }
    sections = {f"{k} @ {IMGSZ}": v for k, v in result["sections"].items()}
    js, md = write_results("real", sections, meta, notes)
    payload = json.loads(js.read_text())
    payload["profiles"] = {"imgsz": IMGSZ, "threads": 2, "graphs": result["profiles"]}
    payload["agreement_by_scene"] = result["by_scene"]
    atomic_write_json(js, payload)
    atomic_write_text(
        md,
        md.read_text() + f"\n## ONNX Runtime profile @ {IMGSZ} px, 2 threads (kernel time per op "
        "type)\n\n"
        + format_profiles(result["profiles"])
        + "\n## Agreement by held-out scene (calibration saw none of them)\n\n"
        + format_scenes(result["by_scene"]),
    )
    print(md.read_text())


def main() -> None:
    """Run the phases asked for and write bench/results/real.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("build", "measure", "all"), default="all")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: yolov8n,yolo11n,yolo26n")
    ap.add_argument("--rebuild", nargs="*", default=[], choices=ORDER + E2E_ORDER, help="rebuild these rows' files")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per row")
    ap.add_argument("--profile-runs", type=int, default=20)
    a = ap.parse_args()
    setup_logging()
    if not DATA.is_file():
        raise SystemExit("bench/real.py: datasets/real/real.yaml is missing; run 'make real' first")
    names = [n for n in a.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"bench/real.py: unknown model(s) {unknown}; use {', '.join(MODELS)}")
    work = WORK / "real"
    work.mkdir(parents=True, exist_ok=True)
    manifest = (
        build(names, a.rebuild, work)
        if a.phase in ("build", "all")
        else json.loads((work / "manifest.json").read_text())
    )
    if a.phase in ("measure", "all"):
        write(manifest, measure(manifest, names, a.runs, a.profile_runs), names)
    LOGGER.info("results in %s", RESULTS)


if __name__ == "__main__":
    main()
