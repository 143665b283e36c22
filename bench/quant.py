"""Quantization benchmark: INT8 variants of the bundled YOLOv8n student against FP32, in one run.

Rows (each built at 256 px for mAP and at 320 / 640 px for latency, static batch 1):

- ``fp32``: the ONNX export adapter's FP32 graph;
- ``ultralytics-int8``: Ultralytics' own ``export(format="onnx", quantize=8)`` (ONNX Runtime ``quantize_static``,
  signed 8-bit activations, only Conv quantized, calibrated on the val split as Ultralytics does);
- ``ort-default``: plain ``onnxruntime.quantization.quantize_static`` with its defaults on the whole graph;
- ``ptq-cpu``: this plugin's PTQ, ``cpu`` target (UINT8 activations, per-channel INT8 weights, every op of the
  network quantized, decode float, DFL rewrite, float stem); ``ptq-cpu-nodfl`` is the same layout without the
  graph-level choices (``graph_opts=False``: DFL softmax as exported, stem quantized);
- ``mixed``: sensitivity-guided mixed precision within a 0.5-point mAP50-95 budget (searched on val at 256 px; the
  same float layers are kept at 320 / 640);
- ``qat``: a few epochs of quantization-aware training at 256 px, exported with the learned ranges.

mAP50-95 on the test split at 256 px (the training size, as ``bench/baselines.py``); latency with the one
measurement harness, 2 threads, models of one size interleaved; ONNX Runtime profiles (kernel time per op type) of
the 640 px graphs. Targets at 640 px: ``ptq-cpu`` >= 2.0x faster than FP32 and >= 3x faster than
``ultralytics-int8`` with a mAP50-95 drop <= 1.0 point; ``mixed`` or ``qat`` drop <= 0.5 point.

The build phase (exports, calibration, QAT training, accuracy) and the latency phase (timing and profiles, which
need a quiet machine) run separately: ``--phase build``, then ``--phase latency`` (``--phase all`` does both).
Run: ``.venv/bin/python bench/quant.py --phase build`` (``--smoke``: tiny dataset, 64 px, 1 QAT epoch).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

from runner import (
    RESULTS,
    STUDENT,
    WORK,
    bundled_data,
    export_onnx,
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

LOGGER = logging.getLogger("yoloslim.bench.quant")

ORDER = ["fp32", "ultralytics-int8", "ort-default", "ptq-cpu-nodfl", "ptq-cpu", "mixed", "qat"]
TARGET_VS_FP32 = 2.0
TARGET_VS_ULTRALYTICS = 3.0
PTQ_DROP = 1.0
MIXED_QAT_DROP = 0.5
MIXED_BUDGET = 0.1  # stricter than the 0.5-point target, so the search has layers to keep when PTQ alone meets it
CALIB_IMAGES = 64
QAT_EPOCHS = 3


def _copy_metadata(src: Path, dst: Path) -> None:
    """Give ``dst`` the metadata of ``src`` when the quantizer dropped it (the validator needs names and stride)."""
    import onnx

    model = onnx.load(str(dst))
    have = {p.key for p in model.metadata_props}
    missing = [p for p in onnx.load(str(src), load_external_data=False).metadata_props if p.key not in have]
    if missing:
        for p in missing:
            model.metadata_props.add().CopyFrom(p)
        onnx.save(model, str(dst))


def ort_default(fp32: Path, calib: Any, out: Path) -> Path:
    """``quantize_static`` with every default (QDQ, signed 8-bit activations and weights, per tensor, MinMax)."""
    from onnxruntime.quantization import quantize_static

    from yoloslim_quant import ImageReader

    if not out.exists():
        quantize_static(str(fp32), str(out), ImageReader(calib))
        _copy_metadata(fp32, out)
    return out


def _record_qat(path: Path, checkpoint: Path, epochs: int) -> None:
    """Record in a re-exported QAT graph's metadata which checkpoint (and training) it came from."""
    from yoloslim_quant.quantizer import _record

    _record(path, {"qat": {"epochs": epochs, "checkpoint": str(checkpoint), "reused": True}, "mode": "qat"})


def build(a: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    """Export, calibrate, train and measure accuracy; returns (and saves) the manifest the latency phase reads."""
    import onnx

    from yoloslim.recipe import Stage
    from yoloslim_quant import QuantConfig, calibration_images, load_batch, quantize_graph
    from yoloslim_quant.graph import yoloslim_metadata
    from yoloslim_quant.quantizer import quantize_checkpoint

    previous = json.loads((work / "manifest.json").read_text()) if (work / "manifest.json").is_file() else {}
    files: dict[str, dict[str, str]] = {name: {} for name in ORDER}
    notes: dict[str, Any] = dict(previous.get("notes") or {})
    seconds: dict[str, float] = dict(previous.get("build_seconds") or {})

    def need(name: str, path: Path) -> bool:
        """Build ``path`` unless an earlier build left it and ``--rebuild`` does not name it."""
        if name in a.rebuild or not path.exists():
            return True
        LOGGER.info("%s: keeping %s", name, path)
        return False

    sizes = sorted({a.map_imgsz, *a.latency_sizes})
    calib = {s: load_batch(calibration_images(data, "train", a.calib_images), s) for s in sizes}

    timed_now: set[str] = set()

    def timed(name: str, fn: Any) -> Any:
        """Run ``fn``, adding its seconds to this build's time for ``name`` (an earlier build's time is replaced)."""
        t0 = time.time()
        result = fn()
        before = seconds.get(name, 0.0) if name in timed_now else 0.0
        seconds[name] = round(before + time.time() - t0, 1)
        timed_now.add(name)
        return result

    for s in sizes:
        files["fp32"][str(s)] = str(export_onnx(a.student, s, work))
    for s in sizes:
        try:
            out = work / f"ultralytics-int8_{s}.onnx"
            if need("ultralytics-int8", out):
                timed("ultralytics-int8", lambda: ultralytics_int8(a.student, data, s, out))
            files["ultralytics-int8"][str(s)] = str(out)
        except Exception as e:  # recorded, not fatal: e.g. a download it needs offline
            notes["ultralytics-int8"] = f"export failed at {s} px: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            LOGGER.warning("Ultralytics INT8 export failed: %s\n%s", e, traceback.format_exc())
            break
    for s in sizes:
        out = work / f"ort-default_{s}.onnx"
        if need("ort-default", out):
            timed("ort-default", lambda: ort_default(Path(files["fp32"][str(s)]), calib[s], out))
        files["ort-default"][str(s)] = str(out)
    for s in sizes:
        ctx = slim_context(data, s, work / "ptq")
        out = work / f"ptq-cpu_{s}.onnx"
        if need("ptq-cpu", out):
            timed(
                "ptq-cpu",
                lambda: quantize_checkpoint(
                    a.student, out, quant_options(calib_images=a.calib_images), ctx, workdir=work / f"ptq_work_{s}"
                ),
            )
        files["ptq-cpu"][str(s)] = str(out)
        nodfl = work / f"ptq-cpu-nodfl_{s}.onnx"
        if need("ptq-cpu-nodfl", nodfl):
            quantize_graph(Path(files["fp32"][str(s)]), nodfl, calib[s], QuantConfig(graph_opts=False))
        files["ptq-cpu-nodfl"][str(s)] = str(nodfl)

    # Mixed precision: searched once at the mAP size, the same layers kept float at the latency sizes.
    ctx = slim_context(data, a.map_imgsz, work / "mixed")
    mixed = work / f"mixed_{a.map_imgsz}.onnx"
    rebuild_mixed = need("mixed", mixed)
    if rebuild_mixed:
        timed(
            "mixed",
            lambda: quantize_checkpoint(
                a.student,
                mixed,
                quant_options(mode="mixed", budget=MIXED_BUDGET, calib_images=a.calib_images),
                ctx,
                workdir=work / "mixed_work",
            ),
        )
    files["mixed"][str(a.map_imgsz)] = str(mixed)
    info = yoloslim_metadata(onnx.load(str(mixed)))["quantization"]
    keep = info["float_layers"]
    notes["mixed"] = {k: v for k, v in info["mixed"].items() if k != "sensitivity"}
    notes["mixed"]["top_sensitivity"] = sorted(info["mixed"]["sensitivity"].items(), key=lambda kv: -kv[1])[:10]
    for s in a.latency_sizes:
        if s != a.map_imgsz:
            out = work / f"mixed_{s}.onnx"
            if rebuild_mixed or not out.exists():
                quantize_graph(Path(files["fp32"][str(s)]), out, calib[s], QuantConfig(keep=keep))
            files["mixed"][str(s)] = str(out)

    # QAT: trained once at the mAP size; its checkpoint carries the ranges into every export.
    ctx = slim_context(data, a.map_imgsz, work / "qat")
    opts = quant_options(mode="qat", epochs=a.qat_epochs, calib_images=a.calib_images)
    from yoloslim_quant.options import QAT_TRAIN_DEFAULTS

    stage = Stage(
        0,
        "quantize",
        "qat",
        opts,
        epochs=a.qat_epochs,
        train={**QAT_TRAIN_DEFAULTS, **a.qat_train},
        produces="artifact",
    )
    ctx.stage, ctx.stage_dir = stage, work / "qat"
    qat_out = work / f"qat_{a.map_imgsz}.onnx"
    trained = work / "qat" / "train" / "weights" / "best.pt"
    if qat_out.exists() and "qat" not in a.rebuild:
        LOGGER.info("qat: keeping %s", qat_out)
    elif a.reuse_qat and trained.is_file():  # the training is the slow part: export the earlier run's checkpoint
        LOGGER.info("qat: reusing %s", trained)
        quantize_checkpoint(
            trained, qat_out, quant_options(calib_images=a.calib_images), ctx, workdir=work / "qat_work"
        )
        _record_qat(qat_out, trained, a.qat_epochs)
    else:
        timed("qat", lambda: quantize_checkpoint(a.student, qat_out, opts, ctx, stage=stage, workdir=work / "qat_work"))
    files["qat"][str(a.map_imgsz)] = str(qat_out)
    qat_info = yoloslim_metadata(onnx.load(str(qat_out)))["quantization"]
    best = Path(qat_info["qat"]["checkpoint"])
    notes["qat"] = {
        "epochs": a.qat_epochs,
        "train": {**QAT_TRAIN_DEFAULTS, **a.qat_train},
        "checkpoint": str(best),
        "ranges_carried": qat_info["qat_ranges"],
    }
    for s in a.latency_sizes:
        if s != a.map_imgsz:
            out = work / f"qat_{s}.onnx"
            if need("qat-export", out) or "qat" in a.rebuild:
                quantize_checkpoint(
                    best,
                    out,
                    quant_options(calib_images=a.calib_images),
                    slim_context(data, s, work / "qat"),
                    workdir=work / f"qat_work_{s}",
                )
            files["qat"][str(s)] = str(out)

    rows = [
        (name, Path(files[name][str(a.map_imgsz)]))
        for name in ORDER
        if str(a.map_imgsz) in files[name] and name != "ptq-cpu-nodfl"
    ]
    accuracy = measure_rows(rows, data, imgsz=a.map_imgsz, split="test", latency=False)
    manifest = {
        "files": files,
        "notes": notes,
        "build_seconds": seconds,
        "data": str(data),
        "student": str(a.student),
        "map_imgsz": a.map_imgsz,
        "latency_sizes": a.latency_sizes,
        "calib_images": a.calib_images,
        "accuracy": [m.to_dict() for m in accuracy],
        "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_json(work / "manifest.json", manifest)
    return manifest


def latency(
    a: argparse.Namespace, manifest: dict[str, Any], data: Path
) -> tuple[dict[str, list[Measurement]], dict[str, Any]]:
    """Time every variant at each latency size (interleaved) and profile the 640 px graphs."""
    from profiling import profile_ops

    from yoloslim.dataset import check_dataset, split_images
    from yoloslim.measurement import model_input

    files = manifest["files"]
    sections: dict[str, list[Measurement]] = {}
    load_before = load_average()
    for s in manifest["latency_sizes"]:
        rows = [(name, Path(files[name][str(s)])) for name in ORDER if str(s) in files[name]]
        sections[f"latency @ {s}, 2 threads (interleaved)"] = measure_rows(
            rows, data, imgsz=s, split="test", accuracy=False, threads=2, runs=a.runs, warmup=20
        )
    size = max(manifest["latency_sizes"])
    image = model_input(size, split_images(check_dataset(data), "test")[0])
    profiles = {
        name: profile_ops(files[name][str(size)], image, runs=a.profile_runs)
        for name in ORDER
        if str(size) in files[name]
    }
    return sections, {
        "profiles": profiles,
        "profile_imgsz": size,
        "load_before": load_before,
        "load_after": load_average(),
    }


def _verdicts(acc: dict[str, Measurement], lat: dict[str, Measurement], size: int) -> list[str]:
    notes = []
    base = acc["fp32"].map50_95

    def drop(name: str) -> float:
        return (base - acc[name].map50_95) * 100

    if "ptq-cpu" in lat and "fp32" in lat:
        speed = lat["fp32"].latency_p50_ms / lat["ptq-cpu"].latency_p50_ms
        notes.append(
            f"ptq-cpu @ {size}: {speed:.2f}x faster than FP32 (target >= {TARGET_VS_FP32}x: "
            f"{'met' if speed >= TARGET_VS_FP32 else f'missed by {TARGET_VS_FP32 - speed:.2f}x'}), "
            f"mAP50-95 drop {drop('ptq-cpu'):+.2f} points (target <= {PTQ_DROP}: "
            f"{'met' if drop('ptq-cpu') <= PTQ_DROP else 'missed'})"
        )
    if "ptq-cpu" in lat and "ultralytics-int8" in lat:
        speed = lat["ultralytics-int8"].latency_p50_ms / lat["ptq-cpu"].latency_p50_ms
        verdict = "met" if speed >= TARGET_VS_ULTRALYTICS else f"missed by {TARGET_VS_ULTRALYTICS - speed:.2f}x"
        notes.append(
            f"ptq-cpu @ {size}: {speed:.2f}x faster than Ultralytics' INT8 export (target >= "
            f"{TARGET_VS_ULTRALYTICS}x: {verdict})"
        )
    for name in ("mixed", "qat"):
        if name in acc:
            d = drop(name)
            extra = (
                f", {lat[name].latency_p50_ms / lat['fp32'].latency_p50_ms:.2f}x FP32 latency"
                if name in lat and "fp32" in lat
                else ""
            )
            notes.append(
                f"{name}: mAP50-95 drop {d:+.2f} points (target <= {MIXED_QAT_DROP}: "
                f"{'met' if d <= MIXED_QAT_DROP else 'missed'}){extra}"
            )
    for name in ("ultralytics-int8", "ort-default"):
        if name in acc:
            notes.append(f"{name}: mAP50-95 drop {drop(name):+.2f} points")
    return notes


def write(manifest: dict[str, Any], sections: dict[str, list[Measurement]], extra: dict[str, Any], name: str) -> None:
    """Write bench/results/<name>.json and .md (accuracy, latency tables, verdicts, profiles)."""
    from profiling import format_profiles

    accuracy = [Measurement(**m) for m in manifest["accuracy"]]
    all_sections = {f"accuracy on test @ {manifest['map_imgsz']} (latency not measured here)": accuracy, **sections}
    acc = {m.name: m for m in accuracy}
    size = max(manifest["latency_sizes"])
    lat = {m.name: m for m in sections.get(f"latency @ {size}, 2 threads (interleaved)", [])}
    notes = _verdicts(acc, lat, size) if lat else ["latency phase not run yet: run --phase latency"]
    for key, value in manifest["notes"].items():
        notes.append(f"{key}: {json.dumps(value, default=str)}")
    notes.append(f"build seconds: {manifest['build_seconds']}")
    if extra:
        notes.append(
            f"load average (1/5/15 min) before the latency phase: {extra['load_before']}, after: "
            f"{extra['load_after']} (2 cores; > 0.5 means other work shared the CPU)"
        )
    notes.append(
        "ptq-cpu-nodfl: the ptq-cpu layout without graph-level choices (DFL softmax as exported, stem "
        "quantized); the QAT checkpoint was trained with the stem fake-quantized, its exports keep the stem "
        "float like ptq-cpu"
    )
    notes.append(
        f"mixed precision searched with a {MIXED_BUDGET}-point budget on val (stricter than the "
        f"{MIXED_QAT_DROP}-point target on test)"
    )
    notes.append(
        "calibration: 64 train images for this plugin's rows and ort-default; Ultralytics calibrates on "
        "the val split itself"
    )
    meta = {
        "dataset": Path(manifest["data"]).parent.name,
        "student": Path(manifest["student"]).name,
        "map_imgsz": manifest["map_imgsz"],
        "latency_sizes": manifest["latency_sizes"],
    }
    js, md = write_results(name, all_sections, meta, notes)
    if extra:
        payload = json.loads(js.read_text())
        payload["profiles"] = {"imgsz": extra["profile_imgsz"], "threads": 2, "graphs": extra["profiles"]}
        atomic_write_json(js, payload)
        text = md.read_text()
        text += (
            f"\n## ONNX Runtime profile @ {extra['profile_imgsz']} px, 2 threads (kernel time per op type)\n\n"
            + format_profiles(extra["profiles"])
        )
        atomic_write_text(md, text)
    print(md.read_text())


def main() -> None:
    """Run the phases asked for and write bench/results/<name>.{json,md}."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("build", "latency", "all"), default="all")
    ap.add_argument("--student", type=Path, default=STUDENT)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model and size")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--qat-epochs", type=int, default=QAT_EPOCHS)
    ap.add_argument("--qat-lr0", type=float, help="QAT learning rate (default: the plugin's)")
    ap.add_argument("--calib-images", type=int, default=CALIB_IMAGES)
    ap.add_argument(
        "--rebuild",
        nargs="*",
        default=[],
        choices=["ultralytics-int8", "ort-default", "ptq-cpu", "ptq-cpu-nodfl", "mixed", "qat"],
        help="rebuild these variants even if an earlier build left their files (others are kept)",
    )
    ap.add_argument("--reuse-qat", action="store_true", help="export the QAT checkpoint of an earlier build")
    ap.add_argument("--name", default="quant", help="results name (bench/results/<name>.json)")
    ap.add_argument("--smoke", action="store_true", help="tiny dataset, 64/96 px, 1 QAT epoch: checks the path only")
    a = ap.parse_args()
    setup_logging()
    data = bundled_data("tiny" if a.smoke else "full")
    from yoloslim.pipeline import model_imgsz

    a.map_imgsz = 64 if a.smoke else model_imgsz(a.student)
    a.latency_sizes = [64, 96] if a.smoke else [320, 640]
    a.qat_train = {"batch": 8} if a.smoke else {}
    if a.qat_lr0 is not None:
        a.qat_train["lr0"] = a.qat_lr0
    if a.smoke:
        a.qat_epochs, a.runs, a.profile_runs, a.calib_images = 1, 3, 2, 8
        a.name = a.name if a.name != "quant" else "quant-smoke"
    work = WORK / a.name
    work.mkdir(parents=True, exist_ok=True)
    if a.phase in ("build", "all"):
        manifest = build(a, data, work)
        if a.phase == "build":
            write(manifest, {}, {}, a.name)
    if a.phase in ("latency", "all"):
        manifest = json.loads((work / "manifest.json").read_text())
        sections, extra = latency(a, manifest, data)
        write(manifest, sections, extra, a.name)
    LOGGER.info("results in %s", RESULTS)


if __name__ == "__main__":
    main()
