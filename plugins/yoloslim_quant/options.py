"""The ``quantize`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoloslim import RecipeError
from yoloslim.recipe import Option, StageType

from .ptq import METHODS, PRECISIONS, TARGETS

MODES = ("ptq", "qat", "mixed")
# Default calibration: avgminmax. Measured on the official COCO checkpoints at 640 px, calibrated on 64 frames of the
# real pool, agreement with FP32 on the 76 pool frames calibration did not see (F1@0.5 / mAP50-95), minmax ->
# avgminmax: yolov8n 0.830/0.763 -> 0.864/0.759, yolo11n 0.858/0.803 -> 0.878/0.869, yolo26n 0.843/0.785 ->
# 0.910/0.897. (percentile and entropy hold every activation of every image in memory: > 20 GB at 640 px.)

STAGE_TYPE = StageType(
    "quantize",
    produces="artifact",
    trains=True,  # only mode 'qat' fine-tunes; the flag allows 'epochs' and 'train' in the recipe
    default_epochs=3,
    epochs_flag="qat-epochs",
    help="quantize to an INT8 QDQ ONNX file (post-training, mixed precision, or quantization-aware training)",
    options={
        "mode": Option(str, "ptq", "ptq (calibrate only), mixed (keep sensitive layers float within a budget), "
                                   "qat (fake-quant fine-tuning, then the same export)", MODES),
        "target": Option(str, "cpu", "cpu (fastest ONNX Runtime x86 layout) or tensorrt (symmetric, checked)",
                         TARGETS),
        "precision": Option(str, "int8", "int8, w8a16 (16-bit activations), weight_only (int8 weights, float "
                                         "compute) or fp16", PRECISIONS),
        "calib_method": Option(str, "avgminmax", "activation range calibration: avgminmax (mean of per-image "
                                                 "extremes), minmax, entropy, percentile", METHODS),
        "calib_images": Option(int, 64, "calibration images read from the dataset"),
        "calib_split": Option(str, "train", "dataset split the calibration images come from"),
        "budget": Option(float, 0.5, "mixed: allowed mAP50-95 drop vs FP32 in points (measured on val)"),
        "max_float_layers": Option(int, 8, "mixed: most layers kept out of INT8"),
        "keep_precision": Option(str, "float", "mixed: what the sensitive layers keep: float or w8a16",
                                 ("float", "w8a16")),
        "qat_ranges": Option(str, "frozen", "qat: activation ranges calibrated then frozen, or learned",
                             ("frozen", "learned")),
        "graph_opts": Option(bool, True, "cpu: graph-level speed choices (DFL softmax on the last axis, float stem)"),
        "end2end": Option(bool, False, "quantize the NMS-free end-to-end layout (YOLO26's one-to-one head, output "
                                       "(1, k, 6); the ONNX export's nms=False); other heads keep their layout"),
    },
    check=lambda options, epochs: parse_options(options, epochs, where=""),
)


@dataclass(frozen=True)
class QuantOptions:
    """Validated options of one ``quantize`` stage (see :data:`STAGE_TYPE`)."""

    mode: str = "ptq"
    target: str = "cpu"
    precision: str = "int8"
    calib_method: str = "avgminmax"
    calib_images: int = 64
    calib_split: str = "train"
    budget: float = 0.5
    max_float_layers: int = 8
    keep_precision: str = "float"
    qat_ranges: str = "frozen"
    graph_opts: bool = True
    end2end: bool = False
    epochs: int = 0


def _error(where: str, message: str) -> RecipeError:
    return RecipeError(f"{where}: {message}" if where else message)


def parse_options(options: dict[str, Any], epochs: int, where: str = "stage 'quantize'") -> QuantOptions:
    """Validate the combination of a ``quantize`` stage's options (types are checked by the recipe).

    Also the stage type's :attr:`~yoloslim.recipe.StageType.check`, so a conflict stops the recipe while it is parsed,
    before any stage runs.

    Args:
        options: ``stage.options`` (missing keys take their declared defaults).
        epochs: The stage's fine-tuning epochs (used by mode ``qat`` only).
        where: Names the stage in error messages ("" when the recipe validation adds it).

    Raises:
        RecipeError: Naming the conflicting keys and the fix.
    """
    defaults = {k: o.default for k, o in STAGE_TYPE.options.items()}
    o = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    if o["calib_images"] < 1:
        raise _error(where, f"'calib_images' must be >= 1, got {o['calib_images']}")
    if o["budget"] < 0:
        raise _error(where, f"'budget' must be >= 0 mAP50-95 points, got {o['budget']}")
    if o["max_float_layers"] < 1:
        raise _error(where, f"'max_float_layers' must be >= 1, got {o['max_float_layers']}")
    if o["precision"] in ("weight_only", "fp16") and o["mode"] != "ptq":
        raise _error(where, f"precision '{o['precision']}' needs no calibration or training; use mode ptq")
    if o["precision"] in ("weight_only", "fp16", "w8a16") and o["target"] == "tensorrt":
        raise _error(where, "target 'tensorrt' takes precision int8 (TensorRT builds FP16 from the FP32 "
                          "ONNX itself: use the export stage with format engine)")
    if "w8a16" in (o["precision"], o["keep_precision"]) and o["target"] == "tensorrt":
        raise _error(where, "TensorRT has no 16-bit integer activations; use keep_precision float")
    if o["mode"] == "qat" and epochs < 1:
        raise _error(where, "mode 'qat' fine-tunes; give 'epochs' >= 1 (e.g. 3)")
    return QuantOptions(**{k: o[k] for k in defaults}, epochs=epochs if o["mode"] == "qat" else 0)
