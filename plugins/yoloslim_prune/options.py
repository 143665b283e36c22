"""The ``prune`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from yoloslim import StageType, option

METHODS = ("magnitude", "channel", "depth")
ALLOCATIONS = ("importance", "latency", "torch-pruning")
_LATENCY_KEYS = ("runtime", "latency_imgsz", "latency_threads", "latency_tolerance")
IMPORTANCE_CHOICES = ("l1", "l2", "bn", "taylor", "loss")
DEFAULT_RATIO = 0.5
# ONNX Runtime's x86 CPU convolutions run in a blocked channel layout (NCHWc) of 16 channels on AVX-512 machines (8 on
# AVX2): a width that is not a multiple of the block pays for the whole block.
ROUND_TO = 16


@dataclass(frozen=True)
class PruneOptions:
    """Options of one ``prune`` stage, declared once (recipe keys, CLI flags, help, checks).

    After validation ``ratio`` and ``importance`` hold the values the stage uses (their defaults depend on
    ``target_macs`` and ``method``), and ``schedule`` is a ``(START, END)`` tuple or ``None``.
    """

    method: str = option(
        "channel", help="magnitude (zero weights), channel (remove channels), depth (remove blocks)", choices=METHODS
    )
    ratio: float | None = option(
        None,
        help=f"fraction removed: weights (magnitude), channels (channel), blocks "
        f"(depth); default {DEFAULT_RATIO} unless target_macs is given",
        ge=0.0,
        lt=1.0,
    )
    target_macs: float | None = option(
        None, help="channel/depth: keep at most this fraction of the original MACs", gt=0.0, le=1.0
    )
    target_latency: str | tuple[float, str] | None = option(
        None,
        help="channel: prune until the model, exported to 'runtime' and timed on this machine, runs within this "
        "budget: milliseconds ('25ms') or a fraction of its own latency ('0.5x')",
    )
    target_latency_ms: float | None = option(None, help="channel: the latency budget in milliseconds", gt=0.0)
    runtime: str = option(
        "onnx",
        help="export format latency is measured in (ONNX Runtime CPU): onnx (FP32) or onnx-int8 (the quantize "
        "stage's INT8 PTQ; the budget then holds for the INT8 file)",
    )
    latency_imgsz: int | None = option(None, help="image size latency is measured at (default: the run's)", ge=32)
    latency_threads: int = option(2, help="ONNX Runtime threads latency is measured with", ge=1)
    latency_tolerance: float = option(
        0.05, help="a budget search stops within this fraction below the budget", gt=0.0, lt=0.5
    )
    allocation: str | None = option(
        None,
        help="channel: importance (one global ranking, every layer capped at max_layer_ratio and rounded to round_to; "
        "the default), latency (importance per millisecond measured in 'runtime') or torch-pruning (Torch-Pruning's "
        "own ranking; the default without global_pruning)",
        choices=ALLOCATIONS,
    )
    importance: str | None = option(
        None,
        help="ranking: l1, l2, bn, taylor (channel; default taylor: first-order loss change on a few training "
        "batches) or loss, l1, l2, bn (depth; default loss)",
        choices=IMPORTANCE_CHOICES,
    )
    global_pruning: bool | None = option(
        None,
        help="rank across layers instead of within each layer (magnitude, channel); default: true for channel, "
        "false for magnitude",
    )
    iterative_steps: int = option(1, help="channel/depth: N rounds of prune -> fine-tune (epochs is per round)", ge=1)
    schedule: str | tuple[int, int] | None = option(
        None, help="magnitude: gradual cubic sparsity from epoch START to END ('START,END', 1-based)"
    )
    round_to: int | None = option(
        ROUND_TO, help="channel: keep channel counts a multiple of this (ONNX Runtime's x86 kernels: 16)", ge=1
    )
    max_layer_ratio: float = option(
        0.75, help="channel: no layer loses more than this fraction of its channels", gt=0.0, lt=1.0
    )
    prune_head: bool = option(True, help="channel: prune the inner channels of Detect's branches")
    calib_batches: int = option(4, help="batches of 8 training images for taylor/loss importance and recalibrate", ge=1)
    recalibrate: bool = option(
        False,
        help="channel/depth: re-estimate BatchNorm statistics on calib_batches x 8 of the stage's images right after "
        "pruning; helps a model kept without fine-tuning on data of its own domain, not after fine-tuning",
    )

    def __post_init__(self) -> None:
        budget = _budget(self.target_latency, self.target_latency_ms)
        given = [k for k in ("ratio", "target_macs") if getattr(self, k) is not None] + (
            ["target_latency"] if budget else []
        )
        if len(given) > 1:
            raise ValueError(f"give one of 'ratio', 'target_macs' and a latency budget, not {' and '.join(given)}")
        if not given:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)
        object.__setattr__(self, "target_latency", budget)
        object.__setattr__(self, "target_latency_ms", None)
        if self.global_pruning is None and self.method != "depth":
            object.__setattr__(self, "global_pruning", self.method == "channel")
        object.__setattr__(self, "schedule", _schedule(self.schedule))
        object.__setattr__(self, "importance", self._importance())

    def _importance(self) -> str:
        method, importance = self.method, self.importance

        def only(keys: tuple[str, ...], methods: str) -> None:
            for k in keys:
                if getattr(self, k) != _DEFAULTS[k]:
                    raise ValueError(f"'{k}' applies to method {methods}, not '{method}'; remove it")

        if method == "magnitude":
            if self.target_macs is not None:
                raise ValueError(
                    "'target_macs' needs method 'channel' or 'depth'; unstructured zeros do not "
                    "reduce MACs (use 'ratio' for the sparsity)"
                )
            if importance not in (None, "l1", "l2"):
                raise ValueError(
                    f"method 'magnitude' ranks weights by |w|; importance '{importance}' applies to 'channel'/'depth'"
                )
            only(("iterative_steps", "round_to", "max_layer_ratio", "prune_head", "recalibrate"), "'channel'/'depth'")
            only(("target_latency", "allocation", *_LATENCY_KEYS), "'channel'")
            return "l1"
        only(("schedule",), "'magnitude'")
        if method == "channel":
            if self.target_latency is not None and self.iterative_steps > 1:
                raise ValueError("a latency budget is met in one pruning round; remove iterative_steps")
            if self.allocation in ("importance", "latency") and not self.global_pruning:
                raise ValueError(
                    f"allocation '{self.allocation}' ranks channels across layers; set global_pruning true, or "
                    "allocation torch-pruning"
                )
            if self.allocation is None:
                object.__setattr__(self, "allocation", "importance" if self.global_pruning else "torch-pruning")
            if importance == "loss":
                raise ValueError("importance 'loss' is for method 'depth'; use l1, l2, bn or taylor")
            return importance or "taylor"
        only(("global_pruning", "round_to", "max_layer_ratio", "prune_head", "allocation", *_LATENCY_KEYS), "'channel'")
        if self.target_latency is not None:
            raise ValueError("a latency budget needs method 'channel'; use target_macs with method 'depth'")
        if importance == "taylor":
            raise ValueError("importance 'taylor' is for method 'channel'; depth uses loss, l1, l2 or bn")
        return importance or "loss"

    def check(self, epochs: int) -> None:
        """Rules that involve the stage's epochs."""
        if self.schedule and self.schedule[1] > epochs:
            raise ValueError(
                f"'schedule' ends at epoch {self.schedule[1]} but the stage fine-tunes {epochs} "
                "epochs; raise 'epochs' or end the schedule earlier"
            )

    @property
    def measures_latency(self) -> bool:
        """Whether the stage must export and time the model (latency allocation asked for, or a latency budget)."""
        return self.method == "channel" and (self.allocation == "latency" or self.target_latency is not None)

    def budget_ms(self, reference_ms: float) -> float | None:
        """The latency budget in milliseconds for a model that runs in ``reference_ms``, or None without a budget."""
        if self.target_latency is None:
            return None
        value, unit = self.target_latency
        return value if unit == "ms" else value * reference_ms

    @property
    def needs_data(self) -> bool:
        """Whether the importance criterion needs calibration batches."""
        return self.importance in ("taylor", "loss")


_DEFAULTS = {f.name: f.default for f in fields(PruneOptions)}


def _budget(text: Any, ms: float | None) -> tuple[float, str] | None:
    """``target_latency`` ('25ms', '0.5x') or ``target_latency_ms`` as ``(value, 'ms' | 'x')``; None without one."""
    if isinstance(text, (tuple, list)):  # already parsed (options rebuilt from their own values)
        return float(text[0]), str(text[1])
    if text is not None and ms is not None:
        raise ValueError("give 'target_latency' or 'target_latency_ms', not both")
    if ms is not None:
        return float(ms), "ms"
    if text is None:
        return None
    raw = str(text).strip().lower().replace(" ", "")
    unit = "ms" if raw.endswith("ms") else "x" if raw.endswith("x") else None
    try:
        value = float(raw[: -len(unit)]) if unit else float("nan")
    except ValueError:
        value = float("nan")
    if unit is None or not value > 0 or (unit == "x" and value >= 1):
        raise ValueError(
            f"'target_latency' must be milliseconds > 0 ('25ms') or a fraction of the model's latency in (0, 1) "
            f"('0.5x'), got {text!r}"
        )
    return value, unit


def _schedule(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        start, end = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"'schedule' must be two epochs START,END (e.g. [1, 5]), got {value!r}") from None
    if not 1 <= start <= end:
        raise ValueError(f"'schedule' needs 1 <= START <= END, got {start},{end}")
    return start, end


STAGE_TYPE = StageType(
    "prune",
    options=PruneOptions,
    accepts_training=True,
    default_epochs=10,
    schedule="restart",  # a pruned model must relearn: its fine-tuning starts at the checkpoint's own lr0
    epochs_flag="finetune-epochs",
    epochs_help="fine-tuning epochs after pruning (per round with iterative_steps)",
    help="prune the model (unstructured magnitude, dependency-aware channels, or whole blocks), then fine-tune",
)
