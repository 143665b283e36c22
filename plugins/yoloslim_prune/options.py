"""The ``prune`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoloslim import RecipeError
from yoloslim.recipe import Option, StageType

METHODS = ("magnitude", "channel", "depth")
IMPORTANCE_CHOICES = ("l1", "l2", "bn", "taylor", "loss")
DEFAULT_RATIO = 0.5

STAGE_TYPE = StageType(
    "prune",
    trains=True,
    default_epochs=10,
    epochs_flag="finetune-epochs",
    help="prune the model (unstructured magnitude, dependency-aware channels, or whole blocks), then fine-tune",
    check=lambda options, epochs: parse_options(options, epochs, where="options"),
    options={
        "method": Option(str, "channel", "magnitude (zero weights), channel (remove channels), depth (remove blocks)",
                         METHODS),
        "ratio": Option(float, None, f"fraction removed: weights (magnitude), channels (channel), blocks (depth); "
                                     f"default {DEFAULT_RATIO} unless target_macs is given"),
        "target_macs": Option(float, None, "channel/depth: keep at most this fraction of the original MACs"),
        "importance": Option(str, None, "ranking: l1, l2, bn, taylor (channel; default l2) or loss, l1, l2, bn "
                                        "(depth; default loss)", IMPORTANCE_CHOICES),
        "global_pruning": Option(bool, False, "rank across layers instead of within each layer (magnitude, channel)"),
        "iterative_steps": Option(int, 1, "channel/depth: N rounds of prune -> fine-tune (epochs is per round)"),
        "schedule": Option((list, str), None, "magnitude: gradual cubic sparsity from epoch START to END "
                                              "('START,END', 1-based)"),
        "round_to": Option(int, None, "channel: keep channel counts a multiple of this (e.g. 8)"),
        "max_layer_ratio": Option(float, 0.9, "channel: no layer loses more than this fraction of its channels"),
        "prune_head": Option(bool, True, "channel: prune the inner channels of Detect's branches"),
        "calib_batches": Option(int, 4, "batches of 8 training images for taylor/loss importance"),
    },
)


@dataclass(frozen=True)
class PruneOptions:
    """Validated options of one ``prune`` stage (see :data:`STAGE_TYPE` for their meaning)."""

    method: str = "channel"
    ratio: float | None = DEFAULT_RATIO
    target_macs: float | None = None
    importance: str = "l2"
    global_pruning: bool = False
    iterative_steps: int = 1
    schedule: tuple[int, int] | None = None
    round_to: int | None = None
    max_layer_ratio: float = 0.9
    prune_head: bool = True
    calib_batches: int = 4

    @property
    def needs_data(self) -> bool:
        """Whether the importance criterion needs calibration batches."""
        return self.importance in ("taylor", "loss")


def _schedule(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        start, end = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise RecipeError(f"{where}: 'schedule' must be two epochs START,END (e.g. [1, 5]), got {value!r}") from None
    if not 1 <= start <= end:
        raise RecipeError(f"{where}: 'schedule' needs 1 <= START <= END, got {start},{end}")
    return start, end


def parse_options(options: dict[str, Any], epochs: int, where: str = "stage 'prune'") -> PruneOptions:
    """Validate the combination of a ``prune`` stage's options (each option's type is checked by the recipe).

    Args:
        options: ``stage.options``.
        epochs: The stage's fine-tuning epochs.
        where: Names the stage in error messages.

    Raises:
        RecipeError: Naming the conflicting keys and the fix.
    """
    o = dict(options)
    method = o.get("method") or "channel"
    ratio, target = o.get("ratio"), o.get("target_macs")
    if ratio is not None and target is not None:
        raise RecipeError(f"{where}: give 'ratio' or 'target_macs', not both")
    if ratio is None and target is None:
        ratio = DEFAULT_RATIO
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise RecipeError(f"{where}: 'ratio' must be in [0, 1), got {ratio}")
    if target is not None and not 0.0 < target <= 1.0:
        raise RecipeError(f"{where}: 'target_macs' must be in (0, 1], got {target}")
    steps = o.get("iterative_steps") or 1
    if steps < 1:
        raise RecipeError(f"{where}: 'iterative_steps' must be >= 1, got {steps}")
    if not 0.0 < o.get("max_layer_ratio", 0.9) < 1.0:
        raise RecipeError(f"{where}: 'max_layer_ratio' must be in (0, 1), got {o['max_layer_ratio']}")
    if (o.get("round_to") or 1) < 1 or (o.get("calib_batches") or 1) < 1:
        raise RecipeError(f"{where}: 'round_to' and 'calib_batches' must be >= 1")
    schedule = _schedule(o.get("schedule"), where)
    importance = o.get("importance")

    def only(keys: tuple[str, ...], methods: str) -> None:
        for k in keys:
            if o.get(k) not in (None, STAGE_TYPE.options[k].default):
                raise RecipeError(f"{where}: '{k}' applies to method {methods}, not '{method}'; remove it")

    if method == "magnitude":
        if target is not None:
            raise RecipeError(f"{where}: 'target_macs' needs method 'channel' or 'depth'; unstructured zeros do not "
                              "reduce MACs (use 'ratio' for the sparsity)")
        if importance not in (None, "l1", "l2"):
            raise RecipeError(f"{where}: method 'magnitude' ranks weights by |w|; importance '{importance}' "
                              "applies to 'channel'/'depth'")
        only(("iterative_steps", "round_to", "max_layer_ratio", "prune_head"), "'channel'/'depth'")
        if schedule and schedule[1] > epochs:
            raise RecipeError(f"{where}: 'schedule' ends at epoch {schedule[1]} but the stage fine-tunes {epochs} "
                              "epochs; raise 'epochs' or end the schedule earlier")
        importance = "l1"
    elif method == "channel":
        only(("schedule",), "'magnitude'")
        importance = importance or "l2"
        if importance == "loss":
            raise RecipeError(f"{where}: importance 'loss' is for method 'depth'; use l1, l2, bn or taylor")
    else:
        only(("schedule",), "'magnitude'")
        only(("global_pruning", "round_to", "max_layer_ratio", "prune_head"), "'channel'")
        importance = importance or "loss"
        if importance == "taylor":
            raise RecipeError(f"{where}: importance 'taylor' is for method 'channel'; depth uses loss, l1, l2 or bn")
    return PruneOptions(method, ratio, target, importance, bool(o.get("global_pruning")), steps, schedule,
                        o.get("round_to"), o.get("max_layer_ratio", 0.9), o.get("prune_head", True),
                        o.get("calib_batches") or 4)
