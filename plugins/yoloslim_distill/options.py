"""The ``distill`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yoloslim import RecipeError
from yoloslim.recipe import REQUIRED, Option, StageType

METHODS = ("logit", "ld", "cwd", "mgd", "sl2")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_METHODS = ("logit", "ld", "cwd")

# Weight of each method's term when the recipe gives none: each weighted term starts on the scale of Ultralytics'
# own items (box/cls/dfl about 4-5 each). Unweighted at the start, for a random-init YOLOv8n taught by the bundled
# YOLOv8s (8 training images, 192 px): logit 29, ld 6.7, cwd 1.8, mgd 4.0, sl2 7.4; sl2's 6 is Ultralytics' `dis`.
DEFAULT_WEIGHTS = {"logit": 0.5, "ld": 1.0, "cwd": 3.0, "mgd": 1.0, "sl2": 6.0}

STAGE_TYPE = StageType(
    "distill",
    trains=True,
    default_epochs=10,
    help="train the model with a frozen teacher's soft labels and features (logit, ld, cwd, mgd, sl2)",
    options={
        "teacher": Option(str, REQUIRED, "teacher checkpoint (.pt) with the same class names as the student"),
        "method": Option((str, list), None,
                         "methods, comma-separated: logit (class scores), ld (box bins), cwd, mgd, sl2 (features); "
                         f"default {','.join(DEFAULT_METHODS)}, without ld where teacher and student have no common "
                         "DFL bins (e.g. a YOLO26 model, reg_max 1)"),
        "weights": Option((str, dict), None, "per-method loss weights, e.g. 'logit=1,cwd=2' "
                                             f"(defaults {','.join(f'{k}={v:g}' for k, v in DEFAULT_WEIGHTS.items())})"),
        "final_weight": Option(float, 1.0, "every weight decays linearly to this fraction of itself by the last epoch"),
        "temperature": Option(float, 2.0, "softening temperature of logit and ld"),
        "cwd_temperature": Option(float, 1.0, "temperature of the per-channel spatial softmax of cwd"),
        "mgd_mask_ratio": Option(float, 0.65, "fraction of student feature positions mgd masks before generating"),
        "teacher_precision": Option(str, "auto", "teacher forward precision: auto (fp16 on CUDA, bf16 on CPUs "
                                                 "with native bf16, else fp32), fp32, bf16, fp16", PRECISIONS),
    },
    check=lambda options, epochs: parse_options(options, where=""),
)


@dataclass(frozen=True)
class DistillOptions:
    """Validated options of one ``distill`` stage (see :data:`STAGE_TYPE` for their meaning).

    ``defaulted`` holds the methods the stage chose itself because ``method`` was not given (and that no weight
    names): one of them a teacher/student pair cannot use is left out (:func:`yoloslim_distill.pairing.fit_methods`),
    while a method the user asked for must work with the pair or the stage fails before training.
    """

    teacher: str
    weights: dict[str, float] = field(default_factory=lambda: {m: DEFAULT_WEIGHTS[m] for m in DEFAULT_METHODS})
    final_weight: float = 1.0
    temperature: float = 2.0
    cwd_temperature: float = 1.0
    mgd_mask_ratio: float = 0.65
    teacher_precision: str = "auto"
    defaulted: frozenset[str] = frozenset()

    @property
    def methods(self) -> tuple[str, ...]:
        """The active methods, in the order given."""
        return tuple(self.weights)

    def weight_at(self, method: str, epoch: int, epochs: int) -> float:
        """Weight of ``method`` in 0-based ``epoch`` of ``epochs``: linear from its weight to ``final_weight`` x it."""
        frac = epoch / (epochs - 1) if epochs > 1 else 0.0
        return self.weights[method] * (1.0 + (self.final_weight - 1.0) * min(max(frac, 0.0), 1.0))


def _error(where: str, message: str) -> RecipeError:
    return RecipeError(f"{where}: {message}" if where else message)


def _methods(value: Any, where: str) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    methods = [str(p).strip().lower() for p in parts if str(p).strip()]
    if not methods:
        raise _error(where, f"'method' is empty; give one or more of {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise _error(where, f"unknown distillation method '{m}'; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise _error(where, f"'method' lists a method twice ({','.join(methods)})")
    return methods


def _given_weights(value: Any, where: str) -> dict[str, Any]:
    """The ``weights`` option as {method: value}, from 'ld=2,cwd=3' or a mapping (values not yet checked)."""
    given: dict[str, Any] = {}
    if isinstance(value, str):
        for item in filter(None, (s.strip() for s in value.split(","))):
            key, sep, num = item.partition("=")
            if not sep:
                raise _error(where, f"'weights' item '{item}' must be METHOD=WEIGHT, e.g. 'cwd=2'")
            given[key.strip().lower()] = num.strip()
    elif isinstance(value, dict):
        given = {str(k).lower(): v for k, v in value.items()}
    return given


def _weights(given: dict[str, Any], methods: list[str], where: str) -> dict[str, float]:
    weights = {m: DEFAULT_WEIGHTS[m] for m in methods}
    for key, num in given.items():
        if key not in methods:
            raise _error(where, f"'weights' names '{key}', which is not in 'method' ({','.join(methods)}); "
                              "add it to 'method' or remove its weight")
        try:
            weights[key] = float(num)
        except (TypeError, ValueError):
            raise _error(where, f"weight of '{key}' must be a number, got {num!r}") from None
        if weights[key] < 0:
            raise _error(where, f"weight of '{key}' must be >= 0, got {weights[key]}")
    return weights


def parse_options(options: dict[str, Any], where: str = "stage 'distill'") -> DistillOptions:
    """Validate the combination of a ``distill`` stage's options (each option's type is checked by the recipe).

    Args:
        options: ``stage.options`` (missing keys take their declared defaults).
        where: Names the stage in error messages ("" when the recipe validation adds it).

    Raises:
        RecipeError: Naming the bad key and the fix.
    """
    o = {k: opt.default for k, opt in STAGE_TYPE.options.items() if opt.default is not REQUIRED}
    o.update({k: v for k, v in options.items() if v is not None})
    teacher = o.get("teacher")
    if not teacher:
        raise _error(where, "missing 'teacher' (the teacher checkpoint, e.g. weights/teacher_yolov8s.pt)")
    methods = _methods(o.get("method") or ",".join(DEFAULT_METHODS), where)
    given = _given_weights(o.get("weights"), where)
    weights = _weights(given, methods, where)
    # Without 'method', the default methods a pair cannot use are left out, unless a weight asks for them.
    defaulted = frozenset() if o.get("method") else frozenset(m for m in methods if m not in given)
    final = o.get("final_weight", 1.0)
    if final is None or final < 0:
        raise _error(where, f"'final_weight' must be >= 0, got {final}")
    for key in ("temperature", "cwd_temperature"):
        if (o.get(key) or 0) <= 0:
            raise _error(where, f"'{key}' must be > 0, got {o.get(key)}")
    ratio = o.get("mgd_mask_ratio", 0.65)
    if ratio is None or not 0.0 <= ratio < 1.0:
        raise _error(where, f"'mgd_mask_ratio' must be in [0, 1), got {ratio}")
    return DistillOptions(str(teacher), weights, float(final), float(o.get("temperature", 2.0)),
                          float(o.get("cwd_temperature", 1.0)), float(ratio), o.get("teacher_precision") or "auto",
                          defaulted)
