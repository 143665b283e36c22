"""The ``quantize`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoloslim import StageType, option

from .ptq import METHODS, PRECISIONS, TARGETS

MODES = ("ptq", "qat", "mixed")
# Default calibration: avgminmax. Measured on the official COCO checkpoints at 640 px, calibrated on 64 frames of the
# real pool, agreement with FP32 on the 76 pool frames calibration did not see (F1@0.5 / mAP50-95), minmax ->
# avgminmax: yolov8n 0.830/0.763 -> 0.864/0.759, yolo11n 0.858/0.803 -> 0.878/0.869, yolo26n 0.843/0.785 ->
# 0.910/0.897. (percentile and entropy hold every activation of every image in memory: > 20 GB at 640 px.)

# Training arguments of quantization-aware training unless the recipe or command line sets them: a trained model
# fine-tuned with fake quantizers needs a small learning rate from the first step, and fake quantization in AMP is
# not what the INT8 model computes.
QAT_TRAIN_DEFAULTS = {"lr0": 0.00001, "warmup_epochs": 0, "amp": False}


@dataclass(frozen=True)
class QuantOptions:
    """Options of one ``quantize`` stage, declared once (recipe keys, CLI flags, help, checks)."""

    mode: str = option(
        "ptq",
        help="ptq (calibrate only), mixed (keep sensitive layers float within a budget), "
        "qat (fake-quant fine-tuning, then the same export)",
        choices=MODES,
    )
    target: str = option(
        "cpu", help="cpu (fastest ONNX Runtime x86 layout) or tensorrt (symmetric, checked)", choices=TARGETS
    )
    precision: str = option(
        "int8",
        help="int8, w8a16 (16-bit activations), weight_only (int8 weights, float compute) or fp16",
        choices=PRECISIONS,
    )
    calib_method: str = option(
        "avgminmax",
        help="activation range calibration: avgminmax (mean of per-image extremes), minmax, entropy, percentile",
        choices=METHODS,
    )
    calib_images: int = option(64, help="calibration images read from the dataset", ge=1)
    calib_split: str = option("train", help="dataset split the calibration images come from")
    budget: float = option(0.5, help="mixed: allowed mAP50-95 drop vs FP32 in points (measured on val)", ge=0.0)
    max_float_layers: int = option(8, help="mixed: most layers kept out of INT8", ge=1)
    keep_precision: str = option(
        "float", help="mixed: what the sensitive layers keep: float or w8a16", choices=("float", "w8a16")
    )
    qat_ranges: str = option(
        "frozen", help="qat: activation ranges calibrated then frozen, or learned", choices=("frozen", "learned")
    )
    graph_opts: bool = option(True, help="cpu: graph-level speed choices (DFL softmax on the last axis, float stem)")
    end2end: bool = option(
        False,
        help="quantize the NMS-free end-to-end layout (YOLO26's one-to-one head, output "
        "(1, k, 6); the ONNX export's nms=False); other heads keep their layout",
    )

    def __post_init__(self) -> None:
        if self.precision in ("weight_only", "fp16") and self.mode != "ptq":
            raise ValueError(f"precision '{self.precision}' needs no calibration or training; use mode ptq")
        if self.precision in ("weight_only", "fp16", "w8a16") and self.target == "tensorrt":
            raise ValueError(
                "target 'tensorrt' takes precision int8 (TensorRT builds FP16 from the FP32 ONNX "
                "itself: use the export stage with format engine)"
            )
        if "w8a16" in (self.precision, self.keep_precision) and self.target == "tensorrt":
            raise ValueError("TensorRT has no 16-bit integer activations; use keep_precision float")

    def check(self, epochs: int) -> None:
        """Rules that involve the stage's epochs."""
        if self.mode == "qat" and epochs < 1:
            raise ValueError("mode 'qat' fine-tunes; give 'epochs' >= 1 (e.g. 3)")


STAGE_TYPE = StageType(
    "quantize",
    options=QuantOptions,
    produces="artifact",
    accepts_training=True,  # mode 'qat' fine-tunes; other modes ignore 'epochs' and 'train'
    default_epochs=3,
    train_defaults=QAT_TRAIN_DEFAULTS,
    epochs_flag="qat-epochs",
    epochs_help="quantization-aware training epochs (mode qat only)",
    help="quantize to an INT8 QDQ ONNX file (post-training, mixed precision, or quantization-aware training)",
)


def parse_options(options: dict[str, Any], epochs: int = 0, where: str = "stage 'quantize'") -> QuantOptions:
    """Build checked :class:`QuantOptions` from a mapping of option values (a shortcut for tests and scripts).

    Raises:
        RecipeError: Naming the conflicting keys and the fix.
    """
    return STAGE_TYPE.parse(options, epochs, where)
