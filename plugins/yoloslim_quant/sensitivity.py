"""Per-layer sensitivity and accuracy-aware mixed precision.

Sensitivity of a layer = how far the model's output moves when that layer alone is quantized (INT8 per-channel
weights, UINT8 input and output with the calibrated ranges) and everything else stays float. It is measured on
calibration images with ONNX Runtime, one small graph edit per layer (no re-calibration), so ranking all layers of
a YOLOv8n costs seconds, not a validation run per layer.

The output error weighs each anchor by the FP32 model's best class probability, so background anchors that no
detection uses do not dominate: ``sum_a p_a * (|d box_a| / imgsz + |d cls_a|) / sum_a p_a``, averaged over images.

Mixed precision then keeps the most sensitive layers in float (or W8A16), a few more at a time, until the mAP50-95
drop against FP32 is within the budget, measured with the one validator.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from yoloslim import onnx_class_count

from .graph import quantizable_layers
from .ptq import QuantConfig, policy_float_layers, prepare, quantize_graph, run_onnx

LOGGER = logging.getLogger("yoloslim.quant.sensitivity")


def output_error(reference: np.ndarray, candidate: np.ndarray, imgsz: int, nc: int | None = None) -> float:
    """Confidence-weighted output error between two raw outputs ``(N, 4 + classes, anchors)``.

    For the end-to-end layout ``(N, k, 6)`` (YOLO26 exported NMS-free: top-k detections, whose order changes with
    any score change) the error is ``1 -`` the candidate's agreement mAP50-95 with the reference
    (:mod:`yoloslim.agreement`, reference boxes at conf 0.25).
    """
    from yoloslim import is_end2end

    if nc is not None and is_end2end(reference.shape, nc):
        from yoloslim import compare_detections

        return 1.0 - compare_detections(reference, candidate, nc).map50_95
    weight = reference[:, 4:].max(axis=1) + 1e-6  # (N, anchors)
    box = np.abs(reference[:, :4] - candidate[:, :4]).sum(axis=1) / imgsz
    cls = np.abs(reference[:, 4:] - candidate[:, 4:]).sum(axis=1)
    return float(((box + cls) * weight).sum(axis=1).mean() / weight.sum(axis=1).mean())


def _ranges(cache: Path) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import load_tensors_data  # type: ignore[attr-defined]

    data = load_tensors_data(str(cache))
    return {k: (float(np.min(v.range_value[0])), float(np.max(v.range_value[1]))) for k, v in data.data.items()}


def _qdq(name: str, lo: float, hi: float, nodes: list[Any], inits: list[Any]) -> str:
    """Append a UINT8 Q/DQ pair for tensor ``name``; returns the dequantized tensor's name."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    zero = int(np.clip(round(-lo / scale), 0, 255))
    s, z = f"{name}_sens_scale", f"{name}_sens_zero"
    inits += [
        numpy_helper.from_array(np.array(scale, np.float32), s),
        numpy_helper.from_array(np.array(zero, np.uint8), z),
    ]
    nodes += [
        helper.make_node("QuantizeLinear", [name, s, z], [f"{name}_sens_q"]),
        helper.make_node("DequantizeLinear", [f"{name}_sens_q", s, z], [f"{name}_sens_dq"]),
    ]
    return f"{name}_sens_dq"


def single_layer_model(model: onnx.ModelProto, layer: str, ranges: dict[str, tuple[float, float]]) -> onnx.ModelProto:
    """A copy of ``model`` where only ``layer`` is quantized (per-channel INT8 weights, UINT8 input and output)."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    node = next(n for n in m.graph.node if n.name == layer)
    inits = {t.name: t for t in m.graph.initializer}
    before: list[Any] = []  # the input's Q/DQ, run right before the layer
    after: list[Any] = []  # the output's, right after it
    new_inits: list[Any] = []
    x = node.input[0]
    if x in ranges:
        node.input[0] = _qdq(x, *ranges[x], before, new_inits)
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    scale = (np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127.0).clip(1e-12)
    q = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
    m.graph.initializer.append(
        numpy_helper.from_array(
            (q * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32), f"{node.input[1]}_sens"
        )
    )
    node.input[1] = f"{node.input[1]}_sens"
    y = node.output[0]
    if y in ranges and y not in {o.name for o in m.graph.output}:
        consumers = [n for n in m.graph.node if y in n.input]
        dq = _qdq(y, *ranges[y], after, new_inits)
        for c in consumers:
            for i, name in enumerate(c.input):
                if name == y:
                    c.input[i] = dq
    m.graph.initializer.extend(new_inits)
    index = list(m.graph.node).index(node)
    for n in before:
        m.graph.node.insert(index, n)
        index += 1
    for k, n in enumerate(after, start=1):
        m.graph.node.insert(index + k, n)
    return m


def layer_sensitivity(
    fp32: str | Path | onnx.ModelProto,
    calib: np.ndarray,
    cache: str | Path,
    cfg: QuantConfig | None = None,
    images: int = 8,
) -> dict[str, float]:
    """One score per quantizable layer: the output error when that layer alone is quantized.

    Args:
        fp32: The FP32 graph.
        calib: Calibration images at the graph's input size (the first ``images`` are scored).
        cache: Calibration cache with the tensor ranges (written by :func:`quantize_graph` or here).
        cfg: Settings of the graph that will be quantized (for the graph rewrites); default ``cpu``.
        images: How many images to score on.

    Returns:
        Layer name -> score (higher: more sensitive), in graph order.
    """
    cfg = cfg or QuantConfig()
    source = fp32 if isinstance(fp32, onnx.ModelProto) else onnx.load(str(fp32))
    model = prepare(source, cfg)
    cache = Path(cache)
    if not cache.is_file():  # calibrate once, through the same quantizer PTQ uses
        with tempfile.TemporaryDirectory(prefix="yoloslim-sens-") as tmp:
            quantize_graph(source, Path(tmp) / "calib.onnx", calib, cfg, cache=cache)
    ranges = _ranges(cache)
    x = calib[:images]
    imgsz = int(x.shape[-1])
    reference = run_onnx(model.SerializeToString(), x, optimize=False)
    nc = onnx_class_count(model)
    scores = {}
    t0 = time.time()
    for layer in quantizable_layers(model):
        candidate = run_onnx(single_layer_model(model, layer, ranges).SerializeToString(), x, optimize=False)
        scores[layer] = output_error(reference, candidate, imgsz, nc)
    LOGGER.info("sensitivity of %d layers on %d images in %.1f s", len(scores), len(x), time.time() - t0)
    return scores


@dataclass
class MixedResult:
    """Outcome of the mixed-precision search.

    Attributes:
        keep: Layers kept out of INT8 in the chosen try, most sensitive first (empty: plain PTQ was best).
        fp32_map: Score of the FP32 graph (mAP50-95, or agreement mAP50-95 with itself).
        steps: One entry per tried configuration: kept layers count, score, drop in points, path.
        met: Whether the chosen try is within the budget.
        drop_points: The chosen try's drop against FP32, in points.
        chosen_path: The chosen try's file.
    """

    keep: list[str]
    fp32_map: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    met: bool = False
    drop_points: float = 0.0
    chosen_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def search_mixed(
    fp32: str | Path,
    calib: np.ndarray,
    cache: str | Path,
    cfg: QuantConfig,
    evaluate: Callable[[Path], float],
    scores: dict[str, float],
    budget: float,
    max_layers: int,
    workdir: str | Path,
) -> MixedResult:
    """Keep the most sensitive layers out of INT8 until the drop against FP32 is at most ``budget`` points.

    Tries 0 (plain PTQ), 1, 2, 4, 8, ... layers (up to ``max_layers``) and stops at the first that meets the budget.
    The chosen try is the best-scoring one (the fewest float layers among equals), so the result is never worse than
    the plain PTQ it started from, even when no try meets the budget (``met`` is then False).

    Args:
        fp32: FP32 graph.
        calib: Calibration images.
        cache: Calibration cache (shared by every try).
        cfg: Quantization settings (``keep`` is filled in here).
        evaluate: ``path -> score`` in [0, 1] (validator mAP50-95 or agreement mAP50-95, never on the split the
            final measurement uses).
        scores: From :func:`layer_sensitivity`.
        budget: Allowed drop in points (0.5 = half a point).
        max_layers: Most layers to keep out of INT8.
        workdir: Where the tried graphs are written.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    already = set(policy_float_layers(onnx.load(str(fp32), load_external_data=False), cfg))  # float anyway
    order = [k for k in sorted(scores, key=lambda k: -scores[k]) if k not in already]
    base = evaluate(Path(fp32))
    result = MixedResult(keep=[], fp32_map=base)
    counts = [0] + [k for k in (1, 2, 4, 8, 16, 32, 64) if k < max_layers] + [max_layers]
    best: dict[str, Any] | None = None
    for k in sorted(set(counts)):
        keep = order[:k]
        path = quantize_graph(
            fp32, workdir / f"keep{k}.onnx", calib, QuantConfig(**{**asdict(cfg), "keep": keep}), cache=cache
        )
        value = evaluate(path)
        drop = (base - value) * 100
        step = {"float_layers": k, "map50_95": value, "drop_points": round(drop, 3), "path": str(path)}
        result.steps.append(step)
        LOGGER.info(
            "mixed precision: %d layers kept, score %.4f (drop %.2f points, budget %.2f)", k, value, drop, budget
        )
        if best is None or value > best["map50_95"]:
            best = step
        if drop <= budget:
            break
    assert best is not None
    result.keep = order[: best["float_layers"]]
    result.drop_points = best["drop_points"]
    result.met = best["drop_points"] <= budget
    result.chosen_path = best["path"]
    return result
