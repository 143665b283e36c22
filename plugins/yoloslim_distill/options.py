"""The ``distill`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from yoloslim import StageType, option

METHODS = ("logit", "ld", "cwd", "mgd", "sl2")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The default methods and schedule: the best measured on the 50 %-MACs pruned bundled student, 30 epochs at 256
# (bench/results/recovery.md): logit,ld decayed to 0 gains +0.85 mAP50-95 over plain fine-tuning at 1.49x its time,
# as much as logit,ld,cwd decayed (+0.85, 1.67x) and more than logit,ld,cwd undecayed (+0.51).
DEFAULT_METHODS = ("logit", "ld")
# Where 'ld' cannot distil a pair (no common DFL bins, e.g. YOLO26) the defaults take this feature method instead, so
# such a pair still learns where the teacher's objects are from more than the class scores.
LD_STAND_IN = "cwd"
DEFAULT_FINAL_WEIGHT = 0.0
ORIGINAL = "original"  # teacher: the run's input checkpoint (label-free recovery: the original teaches its copy)

# Weight of each method's term when the recipe gives none: each weighted term starts on the scale of Ultralytics'
# own items (box/cls/dfl about 4-5 each). Unweighted at the start, for a random-init YOLOv8n taught by the bundled
# YOLOv8s (8 training images, 192 px): logit 29, ld 6.7, cwd 1.8, mgd 4.0, sl2 7.4; sl2's 6 is Ultralytics' `dis`.
DEFAULT_WEIGHTS = {"logit": 0.5, "ld": 1.0, "cwd": 3.0, "mgd": 1.0, "sl2": 6.0}


@dataclass(frozen=True)
class DistillOptions:
    """Options of one ``distill`` stage, declared once (recipe keys, CLI flags, help, checks).

    ``method`` and ``weights`` keep what the user gave; :attr:`methods`, :attr:`loss_weights` and :attr:`defaulted`
    are what the stage uses. ``defaulted`` holds the methods the stage chose itself because ``method`` was not given
    (and that no weight names): one of them a teacher/student pair cannot use is left out
    (:func:`yoloslim_distill.pairing.fit_methods`), while a method the user asked for must work with the pair or the
    stage fails before training.
    """

    teacher: str = option(
        help="teacher checkpoint (.pt) with the same class names as the student, or 'original': "
        "the run's input checkpoint (label-free recovery of a compressed copy)"
    )
    method: str | list[str] | None = option(
        None,
        help="methods, comma-separated: logit (class scores), ld (box bins), cwd, mgd, sl2 (features); "
        f"default {','.join(DEFAULT_METHODS)}; {LD_STAND_IN} in place of ld where teacher and student have no "
        "common DFL bins (e.g. a YOLO26 model, reg_max 1)",
    )
    weights: str | dict[str, float] | None = option(
        None,
        help="per-method loss weights, e.g. 'logit=1,cwd=2' "
        f"(defaults {','.join(f'{k}={v:g}' for k, v in DEFAULT_WEIGHTS.items())})",
    )
    final_weight: float = option(
        DEFAULT_FINAL_WEIGHT,
        help="every weight decays linearly to this fraction of itself by the last epoch (see decay_end); "
        "0: the last epochs train on the detection loss alone, 1: no decay",
        ge=0.0,
    )
    decay_end: float = option(
        1.0,
        help="fraction of the epochs over which the weights decay to final_weight and then stay there "
        "(1.0: the decay ends at the last epoch)",
        gt=0.0,
        le=1.0,
    )
    teacher_scale: float = option(
        1.0,
        help="the teacher sees each batch resized by this factor (sides rounded to a multiple of its largest stride) "
        "and its outputs are resampled onto the student's cells: a teacher more accurate at a larger input teaches "
        "from there, at the cost of its forward pass at that size",
        gt=0.0,
        le=4.0,
    )
    temperature: float = option(2.0, help="softening temperature of logit and ld", gt=0.0)
    cwd_temperature: float = option(1.0, help="temperature of the per-channel spatial softmax of cwd", gt=0.0)
    mgd_mask_ratio: float = option(
        0.65, help="fraction of student feature positions mgd masks before generating", ge=0.0, lt=1.0
    )
    teacher_precision: str = option(
        "auto",
        help="teacher forward precision: auto (fp16 on CUDA, bf16 on CPUs with "
        "native bf16, else fp32), fp32, bf16, fp16",
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        if not str(self.teacher).strip():
            raise ValueError("missing 'teacher' (the teacher checkpoint, e.g. weights/teacher_yolov8s.pt)")
        _ = self.loss_weights  # validates 'method' and 'weights' now, not when training starts

    @cached_property
    def methods(self) -> tuple[str, ...]:
        """The active methods, in the order given."""
        return tuple(self.loss_weights)

    @cached_property
    def loss_weights(self) -> dict[str, float]:
        """Weight of each active method's loss term (the defaults, overridden by ``weights``)."""
        methods = _methods(self.method if self.method else ",".join(DEFAULT_METHODS))
        return _weights(_given_weights(self.weights), methods)

    @cached_property
    def defaulted(self) -> frozenset[str]:
        """Methods the stage chose itself (``method`` not given, no weight naming them): left out if they don't fit."""
        if self.method:
            return frozenset()
        given = _given_weights(self.weights)
        return frozenset(m for m in self.loss_weights if m not in given)

    def weight_at(self, method: str, epoch: int, epochs: int) -> float:
        """Weight of ``method`` in 0-based ``epoch`` of ``epochs``: linear from its weight to ``final_weight`` x it,
        reached at epoch ``decay_end x (epochs - 1)`` and kept after it."""
        frac = epoch / (self.decay_end * (epochs - 1)) if epochs > 1 else 0.0  # decay_end > 0: never a zero divisor
        return self.loss_weights[method] * (1.0 + (self.final_weight - 1.0) * min(max(frac, 0.0), 1.0))


STAGE_TYPE = StageType(
    "distill",
    options=DistillOptions,
    accepts_training=True,
    default_epochs=10,
    epochs_help="training epochs with the teacher",
    help="train the model with a frozen teacher's soft labels and features (logit, ld, cwd, mgd, sl2)",
)


def _methods(value: Any) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    methods = [str(p).strip().lower() for p in parts if str(p).strip()]
    if not methods:
        raise ValueError(f"'method' is empty; give one or more of {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown distillation method '{m}'; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"'method' lists a method twice ({','.join(methods)})")
    return methods


def _given_weights(value: Any) -> dict[str, Any]:
    """The ``weights`` option as {method: value}, from 'ld=2,cwd=3' or a mapping (values not yet checked)."""
    given: dict[str, Any] = {}
    if isinstance(value, str):
        for item in filter(None, (s.strip() for s in value.split(","))):
            key, sep, num = item.partition("=")
            if not sep:
                raise ValueError(f"'weights' item '{item}' must be METHOD=WEIGHT, e.g. 'cwd=2'")
            given[key.strip().lower()] = num.strip()
    elif isinstance(value, dict):
        given = {str(k).lower(): v for k, v in value.items()}
    return given


def _weights(given: dict[str, Any], methods: list[str]) -> dict[str, float]:
    weights = {m: DEFAULT_WEIGHTS[m] for m in methods}
    for key, num in given.items():
        if key not in methods:
            raise ValueError(
                f"'weights' names '{key}', which is not in 'method' ({','.join(methods)}); "
                "add it to 'method' or remove its weight"
            )
        try:
            weights[key] = float(num)
        except (TypeError, ValueError):
            raise ValueError(f"weight of '{key}' must be a number, got {num!r}") from None
        if weights[key] < 0:
            raise ValueError(f"weight of '{key}' must be >= 0, got {weights[key]}")
    return weights


def parse_options(options: dict[str, Any], where: str = "stage 'distill'") -> DistillOptions:
    """Build checked :class:`DistillOptions` from a mapping of option values (a shortcut for tests and scripts).

    Raises:
        RecipeError: Naming the bad key and the fix.
    """
    return STAGE_TYPE.parse(options, 0, where)
