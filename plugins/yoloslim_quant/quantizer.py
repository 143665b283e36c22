"""Quantize a checkpoint end to end: (QAT) -> FP32 ONNX export -> calibration -> (mixed search) -> QDQ ONNX."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from yoloslim import DataError, ExportError, atomic_write_json

from .calibration import calibration_images, load_batch
from .options import QuantOptions
from .ptq import QuantConfig, quantize_graph, weight_only

LOGGER = logging.getLogger("yoloslim.quant")

AGREEMENT_FLOOR = 0.5  # below this F1@0.5 against the FP32 graph's detections, the quantized graph is broken
CHECK_IMAGES = 16  # images of the self-check (agreement with FP32), never calibration images when others exist
MIXED_IMAGES = 48  # unlabelled images that score mixed-precision tries (agreement), likewise
# QAT starts from a converged checkpoint, whose training ended at a tiny learning rate: a larger lr0 first undoes
# part of that training. Measured on the bundled student (trained to its plateau, last cycle lr0 1e-4 cosine to
# 1e-6; FP32 val mAP50-95 0.490), 3 QAT epochs, val mAP50-95 of the fake-quantized model after epochs 1-3:
# lr0 1e-4: 0.475, 0.478, 0.482 (test drop 0.64 points); lr0 1e-5: 0.487, 0.488, 0.486 (test drop 0.24 points).


def detection_agreement(reference: np.ndarray, candidate: np.ndarray, nc: int) -> dict[str, Any]:
    """Agreement of a quantized graph's raw outputs with its FP32 graph's (:mod:`yoloslim.agreement`).

    Both outputs are raw, one image per row, in either head layout. The FP32 graph's detections at the deployment
    threshold (0.25) are the reference; the candidate is scored with F1@0.5 at the same threshold and mAP50-95.

    Returns:
        ``{"f1", "map50_95", "map50", "precision", "recall", "reference_boxes", "candidate_boxes", "images"}``.
    """
    from yoloslim import compare_detections

    agreement = compare_detections(reference, candidate, nc).to_dict()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in agreement.items()}


def check_images(data: str, split: str, used: list[Path], count: int) -> tuple[list[Path], str]:
    """Images for checking a quantized graph: the split's images not used for calibration, else those.

    Returns:
        ``(images, what)`` where ``what`` says which they are (recorded in the metadata), e.g. "'train' images not
        used for calibration".
    """
    from yoloslim import check_dataset, split_images

    taken = set(used)
    rest = [p for p in split_images(check_dataset(data), split) if p not in taken]
    if rest:
        step = max(1, len(rest) // count)
        return rest[::step][:count], f"'{split}' images not used for calibration"
    return list(used[:count]), "calibration images (the split has no others)"


def _nc(fp32: Path) -> int:
    from yoloslim import model_nc

    nc = model_nc(Path(fp32))
    if nc is None:
        raise ExportError(f"{fp32}: the FP32 export carries no class names; export it with the ONNX adapter")
    return nc


def _map_evaluator(data: str, imgsz: int, fp32: Path, nc: int, images: list[Path], what: str) -> tuple[Any, str]:
    """How mixed precision scores a try: validator mAP50-95 on labelled val images, else agreement with FP32.

    Returns:
        ``(evaluate, what)``: ``evaluate(path) -> score in [0, 1]`` and a description for the metadata.
    """
    from yoloslim import check_dataset, has_labels, validate

    dataset = check_dataset(data)
    split = "val" if dataset.get("val") else "train"
    if has_labels(dataset, split):
        return (lambda path: validate(path, data, imgsz=imgsz, split=split)[1]), f"mAP50-95 on '{split}'"
    # Unlabelled images (real footage): agreement mAP50-95 with the FP32 graph, on images calibration did not see
    # (the val split stays untouched for the final measurement).
    from .calibration import load_batch
    from .ptq import run_onnx

    x = load_batch(images, imgsz)
    reference = run_onnx(fp32, x)

    def evaluate(path: Path) -> float:
        return detection_agreement(reference, run_onnx(path, x), nc)["map50_95"]

    return evaluate, f"agreement mAP50-95 with FP32 on {len(images)} unlabelled {what}"


def run_qat(checkpoint: Path, opts: QuantOptions, stage: Any, ctx: Any, calib: np.ndarray) -> Path:
    """Insert fake quantization, calibrate ranges, fine-tune with SlimTrainer; returns the best checkpoint.

    The checkpoint is stripped of the fake quantizers and carries their ranges (see :func:`yoloslim_quant.qat.strip`).
    """
    import torch

    from yoloslim import load_checkpoint

    from . import qat

    model, ckpt = load_checkpoint(checkpoint)
    qat.insert(model, learn_ranges=opts.qat_ranges == "learned", skip_stem=opts.target == "cpu" and opts.graph_opts)
    seen = qat.calibrate(model, (torch.from_numpy(calib[i : i + 8]) for i in range(0, len(calib), 8)))
    LOGGER.info(
        "QAT: %d fake-quant convolutions, ranges calibrated on %d images (%s)",
        len(qat.fake_quant_modules(model)),
        seen,
        opts.qat_ranges,
    )
    ctx.state.setdefault("quant", {})["qat"] = True
    try:  # the stage's train arguments hold QAT_TRAIN_DEFAULTS (the stage type's train_defaults) under the user's
        best = ctx.finetune(model, checkpoint, epochs=stage.epochs, train_args=ckpt.get("train_args"))
    finally:
        ctx.state["quant"]["qat"] = False
    return best


def quantize_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    opts: QuantOptions,
    ctx: Any,
    stage: Any = None,
    workdir: str | Path | None = None,
) -> Path:
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
    layout = {"nms": False} if opts.end2end else {}
    if opts.precision == "fp16":
        return ctx.export(checkpoint, "onnx", out, imgsz=imgsz, half=True, **layout)
    if ctx.data is None and opts.precision != "weight_only":
        raise DataError("static quantization calibrates on dataset images; pass --data")
    t0 = time.time()
    calib = None
    calib_paths: list[Path] = []
    if opts.precision != "weight_only":
        calib_paths = calibration_images(ctx.data, opts.calib_split, opts.calib_images)
        calib = load_batch(calib_paths, imgsz)
    info: dict[str, Any] = {
        "mode": opts.mode,
        "calib_images": 0 if calib is None else len(calib),
        "calib_split": opts.calib_split,
    }
    if opts.mode == "qat":
        if stage is None:
            raise ExportError("mode 'qat' runs inside a recipe stage (it fine-tunes); use 'yoloslim quantize'")
        checkpoint = run_qat(checkpoint, opts, stage, ctx, calib)
        info["qat"] = {"epochs": stage.epochs, "ranges": opts.qat_ranges, "checkpoint": str(checkpoint)}
    from yoloslim import load_checkpoint

    # A QAT checkpoint (this stage's, or one trained earlier) carries its activation ranges: use them.
    qat_model = load_checkpoint(checkpoint)[0]
    if not getattr(qat_model, "yoloslim_qat_ranges", None):
        qat_model = None

    fp32 = ctx.export(
        checkpoint, "onnx", work / ("fp32_end2end.onnx" if opts.end2end else "fp32.onnx"), imgsz=imgsz, **layout
    )
    if opts.precision == "weight_only":
        return weight_only(fp32, out, info)

    cfg = QuantConfig(
        target=opts.target,
        method=opts.calib_method,
        precision=opts.precision,
        graph_opts=opts.graph_opts,
        keep_precision=opts.keep_precision,
    )
    if qat_model is not None:
        from .qat import onnx_ranges

        cfg.ranges = onnx_ranges(qat_model, onnx.load(str(fp32)))
        LOGGER.info("QAT: %d activation ranges carried into the QDQ graph", len(cfg.ranges))
    import hashlib

    digest = hashlib.sha1(Path(fp32).read_bytes()).hexdigest()[:12]  # a cache never outlives the graph it measured
    cache = work / f"calib_{digest}_{opts.calib_method}_{opts.calib_split}_{len(calib)}.json"
    held, held_what = check_images(ctx.data, opts.calib_split, calib_paths, MIXED_IMAGES)
    nc = _nc(fp32)
    if opts.mode == "mixed":
        from yoloslim import time_onnx

        from .sensitivity import layer_sensitivity, search_mixed

        scores = layer_sensitivity(fp32, calib, cache, cfg)
        evaluate, scored_on = _map_evaluator(ctx.data, imgsz, fp32, nc, held, held_what)
        result = search_mixed(
            fp32, calib, cache, cfg, evaluate, scores, opts.budget, opts.max_float_layers, work / "mixed"
        )
        cfg.keep = result.keep
        plain = Path(result.steps[0]["path"])
        chosen = Path(result.chosen_path)
        int8_ms, mixed_ms = time_onnx([plain, chosen], calib[:1])
        info["mixed"] = {
            **result.to_dict(),
            "budget_points": opts.budget,
            "scored_on": scored_on,
            "sensitivity": {k: round(v, 6) for k, v in scores.items()},
            "latency_ms_int8": round(int8_ms, 2),
            "latency_ms_mixed": round(mixed_ms, 2),
            "latency_cost": round(mixed_ms / int8_ms - 1.0, 3),
        }
        LOGGER.info(
            "mixed precision: %d layers kept out of INT8 (drop %.2f points, budget %s: %s): latency %.1f -> "
            "%.1f ms (quick interleaved timing)",
            len(cfg.keep),
            result.drop_points,
            opts.budget,
            "met" if result.met else "NOT met",
            int8_ms,
            mixed_ms,
        )
        atomic_write_json(work / "mixed.json", info["mixed"])
        if not result.met:
            missed = (
                f"quantize: mixed precision missed its budget of {opts.budget} points ({scored_on}): the best "
                f"of {len(result.steps)} tries drops {result.drop_points:.2f} points with {len(result.keep)} "
                f"float layers{' (= plain PTQ)' if not result.keep else ''}; that one was written"
            )
            ctx.state.setdefault("missed", []).append(missed)
            LOGGER.warning(missed)
    quantize_graph(fp32, out, calib, cfg, cache=cache, info=info)

    from .ptq import run_onnx

    check = load_batch(held[:CHECK_IMAGES], imgsz)
    agreement = {
        **detection_agreement(run_onnx(fp32, check), run_onnx(out, check), nc),
        "on": f"{len(check)} {held_what}",
    }
    _record(out, {"agreement_with_fp32": agreement})
    if agreement["f1"] < AGREEMENT_FLOOR:
        out.unlink()
        raise ExportError(
            f"the quantized graph agrees with FP32 at only F1@0.5 {agreement['f1']:.2f} "
            f"({agreement['reference_boxes']} FP32 detections on {agreement['on']}); try mode mixed or "
            "calib_method percentile"
        )
    LOGGER.info(
        "quantized %s -> %s in %.0f s (%s, %s; agreement with FP32: F1@0.5 %.3f, mAP50-95 %.3f on %s)",
        checkpoint.name,
        out,
        time.time() - t0,
        opts.target,
        opts.mode,
        agreement["f1"],
        agreement["map50_95"],
        agreement["on"],
    )
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
