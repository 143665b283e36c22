"""Quantize a checkpoint end to end: (QAT) -> FP32 ONNX export -> calibration -> (mixed search) -> QDQ ONNX."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from yoloslim.checkpoint import atomic_write_json
from yoloslim.errors import DataError, ExportError

from .calibration import calibration_images, load_batch
from .options import QuantOptions
from .ptq import QuantConfig, quantize_graph, weight_only

LOGGER = logging.getLogger("yoloslim.quant")

AGREEMENT_FLOOR = 0.5  # below this share of FP32 detections kept, the quantized graph is broken: refuse it
# QAT starts from a converged checkpoint, whose training ended at a tiny learning rate: a larger lr0 first undoes
# part of that training. Measured on the bundled student (trained to its plateau, last cycle lr0 1e-4 cosine to
# 1e-6; FP32 val mAP50-95 0.490), 3 QAT epochs, val mAP50-95 of the fake-quantized model after epochs 1-3:
# lr0 1e-4: 0.475, 0.478, 0.482 (test drop 0.64 points); lr0 1e-5: 0.487, 0.488, 0.486 (test drop 0.24 points).
QAT_TRAIN_DEFAULTS = {"lr0": 0.00001, "warmup_epochs": 0, "amp": False}


def detection_agreement(reference: np.ndarray, candidate: np.ndarray, conf: float = 0.25,
                        iou: float = 0.5) -> dict[str, Any]:
    """How many of the FP32 detections the quantized model reproduces (same class, IoU >= ``iou``).

    Both outputs are raw ``(N, 4 + classes, anchors)``; detections come from Ultralytics' NMS at ``conf``.

    Returns:
        ``{"detections": FP32 detections, "matched": reproduced, "agreement": matched / detections (1.0 when there
        are none), "max_score_diff": largest class-probability change of a matched detection}``.
    """
    import torch
    from ultralytics.utils.metrics import box_iou
    from ultralytics.utils.nms import non_max_suppression

    ref = non_max_suppression(torch.from_numpy(reference), conf_thres=conf, iou_thres=0.7)
    cand = non_max_suppression(torch.from_numpy(candidate), conf_thres=conf * 0.5, iou_thres=0.7)
    total = matched = 0
    score_diff = 0.0
    for r, c in zip(ref, cand):
        total += len(r)
        if not len(r) or not len(c):
            continue
        ious = box_iou(r[:, :4], c[:, :4])
        same = r[:, 5:6] == c[:, 5].unsqueeze(0)
        best, idx = (ious * same).max(dim=1)
        ok = best >= iou
        matched += int(ok.sum())
        if ok.any():
            score_diff = max(score_diff, float((r[ok, 4] - c[idx[ok], 4]).abs().max()))
    return {"detections": total, "matched": matched, "agreement": matched / total if total else 1.0,
            "max_score_diff": score_diff}


def _val_map(data: str, imgsz: int) -> Any:
    from yoloslim.measure import validate
    from yoloslim.model_io import check_dataset

    split = "val" if check_dataset(data).get("val") else "train"

    def evaluate(path: Path) -> float:
        return validate(path, data, imgsz=imgsz, split=split)[1]

    return evaluate


def run_qat(checkpoint: Path, opts: QuantOptions, stage: Any, ctx: Any, calib: np.ndarray) -> Path:
    """Insert fake quantization, calibrate ranges, fine-tune with SlimTrainer; returns the best checkpoint.

    The checkpoint is stripped of the fake quantizers and carries their ranges (see :func:`yoloslim_quant.qat.strip`).
    """
    import torch

    from yoloslim.model_io import load_checkpoint
    from yoloslim.pipeline import finetune

    from . import qat

    model, ckpt = load_checkpoint(checkpoint)
    qat.insert(model, learn_ranges=opts.qat_ranges == "learned", skip_stem=opts.target == "cpu" and opts.graph_opts)
    seen = qat.calibrate(model, (torch.from_numpy(calib[i:i + 8]) for i in range(0, len(calib), 8)))
    LOGGER.info("QAT: %d fake-quant convolutions, ranges calibrated on %d images (%s)",
                len(qat.fake_quant_modules(model)), seen, opts.qat_ranges)
    ctx.state.setdefault("quant", {})["qat"] = True
    qstage = type(stage).from_dict({**stage.to_dict(), "train": {**QAT_TRAIN_DEFAULTS, **stage.train}})
    try:
        best = finetune(model, qstage, ctx, checkpoint, ckpt.get("train_args"))
    finally:
        ctx.state["quant"]["qat"] = False
    return best


def quantize_checkpoint(checkpoint: str | Path, out: str | Path, opts: QuantOptions, ctx: Any,
                        stage: Any = None, workdir: str | Path | None = None) -> Path:
    """Build the quantized ONNX file of ``checkpoint`` at ``out`` as ``opts`` says.

    Args:
        checkpoint: Ultralytics checkpoint.
        out: Destination ``.onnx``.
        opts: Validated stage options.
        ctx: Run context (dataset, image size, plugins for the ONNX export).
        stage: The recipe stage (needed by mode ``qat`` for its epochs and train arguments).
        workdir: Folder for intermediate files (FP32 export, calibration cache, mixed-precision tries).

    Returns:
        ``out``.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    work = Path(workdir) if workdir else out.parent / f"{out.stem}_work"
    work.mkdir(parents=True, exist_ok=True)
    imgsz = int(ctx.imgsz)
    if opts.precision == "fp16":
        return ctx.export(checkpoint, "onnx", out, imgsz=imgsz, half=True)
    if ctx.data is None and opts.precision != "weight_only":
        raise DataError("static quantization calibrates on dataset images; pass --data")
    t0 = time.time()
    calib = None
    if opts.precision != "weight_only":
        calib = load_batch(calibration_images(ctx.data, opts.calib_split, opts.calib_images), imgsz)
    info: dict[str, Any] = {"mode": opts.mode, "calib_images": 0 if calib is None else len(calib),
                            "calib_split": opts.calib_split}
    if opts.mode == "qat":
        if stage is None:
            raise ExportError("mode 'qat' runs inside a recipe stage (it fine-tunes); use 'yoloslim quantize'")
        checkpoint = run_qat(checkpoint, opts, stage, ctx, calib)
        info["qat"] = {"epochs": opts.epochs, "ranges": opts.qat_ranges, "checkpoint": str(checkpoint)}
    from yoloslim.model_io import load_checkpoint

    # A QAT checkpoint (this stage's, or one trained earlier) carries its activation ranges: use them.
    qat_model = load_checkpoint(checkpoint)[0]
    if not getattr(qat_model, "yoloslim_qat_ranges", None):
        qat_model = None

    fp32 = ctx.export(checkpoint, "onnx", work / "fp32.onnx", imgsz=imgsz)
    if opts.precision == "weight_only":
        return weight_only(fp32, out, info)

    cfg = QuantConfig(target=opts.target, method=opts.calib_method, precision=opts.precision,
                      graph_opts=opts.graph_opts, keep_precision=opts.keep_precision)
    if qat_model is not None:
        from .qat import onnx_ranges

        cfg.ranges = onnx_ranges(qat_model, onnx.load(str(fp32)))
        LOGGER.info("QAT: %d activation ranges carried into the QDQ graph", len(cfg.ranges))
    import hashlib

    digest = hashlib.sha1(Path(fp32).read_bytes()).hexdigest()[:12]  # a cache never outlives the graph it measured
    cache = work / f"calib_{digest}_{opts.calib_method}_{opts.calib_split}_{len(calib)}.json"
    if opts.mode == "mixed":
        from yoloslim.measure import time_onnx

        from .sensitivity import layer_sensitivity, search_mixed

        scores = layer_sensitivity(fp32, calib, cache, cfg)
        result = search_mixed(fp32, calib, cache, cfg, _val_map(ctx.data, imgsz), scores, opts.budget,
                              opts.max_float_layers, work / "mixed")
        cfg.keep = result.keep
        full = Path(result.steps[0]["path"])
        chosen = Path(result.steps[-1]["path"])
        int8_ms, mixed_ms = time_onnx([full, chosen], calib[:1])
        info["mixed"] = {**result.to_dict(), "budget_points": opts.budget,
                         "sensitivity": {k: round(v, 6) for k, v in scores.items()},
                         "latency_ms_int8": round(int8_ms, 2), "latency_ms_mixed": round(mixed_ms, 2),
                         "latency_cost": round(mixed_ms / int8_ms - 1.0, 3)}
        LOGGER.info("mixed precision: %d layers kept out of INT8 (%s), budget %s: latency %.1f -> %.1f ms (quick "
                    "interleaved timing)", len(cfg.keep), "met" if result.met else "NOT met", opts.budget, int8_ms,
                    mixed_ms)
        atomic_write_json(work / "mixed.json", info["mixed"])
    quantize_graph(fp32, out, calib, cfg, cache=cache, info=info)

    from .ptq import run_onnx

    check = calib[:8]
    agreement = detection_agreement(run_onnx(fp32, check), run_onnx(out, check))
    _record(out, {"agreement_with_fp32": agreement})
    if agreement["agreement"] < AGREEMENT_FLOOR:
        out.unlink()
        raise ExportError(f"the quantized graph reproduces only {agreement['matched']} of {agreement['detections']} "
                          f"FP32 detections on calibration images; try mode mixed or calib_method percentile")
    LOGGER.info("quantized %s -> %s in %.0f s (%s, %s; %d/%d FP32 detections reproduced)", checkpoint.name, out,
                time.time() - t0, opts.target, opts.mode, agreement["matched"], agreement["detections"])
    return out


def _record(path: Path, values: dict[str, Any]) -> None:
    """Add entries to the ``quantization`` record of a written graph's ``yoloslim`` metadata."""
    import os
    import tempfile

    from .graph import YOLOSLIM_KEY, set_metadata, yoloslim_metadata

    model = onnx.load(str(path))
    entry = yoloslim_metadata(model)
    entry.setdefault("quantization", {}).update(values)
    set_metadata(model, {YOLOSLIM_KEY: json.dumps(entry, default=str)})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    onnx.save(model, tmp)
    os.replace(tmp, path)
