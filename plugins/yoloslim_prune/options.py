"""The ``prune`` stage's options: declaration (recipe keys and CLI flags) and validation of their combinations."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from yoloslim import StageType, option

METHODS = ("magnitude", "channel", "depth")
IMPORTANCE_CHOICES = ("l1", "l2", "bn", "taylor", "loss")
DEFAULT_RATIO = 0.5


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
    importance: str | None = option(
        None,
        help="ranking: l1, l2, bn, taylor (channel; default l2) or loss, l1, l2, bn (depth; default loss)",
        choices=IMPORTANCE_CHOICES,
    )
    global_pruning: bool = option(False, help="rank across layers instead of within each layer (magnitude, channel)")
    iterative_steps: int = option(1, help="channel/depth: N rounds of prune -> fine-tune (epochs is per round)", ge=1)
    schedule: str | tuple[int, int] | None = option(
        None, help="magnitude: gradual cubic sparsity from epoch START to END ('START,END', 1-based)"
    )
    round_to: int | None = option(None, help="channel: keep channel counts a multiple of this (e.g. 8)", ge=1)
    max_layer_ratio: float = option(
        0.9, help="channel: no layer loses more than this fraction of its channels", gt=0.0, lt=1.0
    )
    prune_head: bool = option(True, help="channel: prune the inner channels of Detect's branches")
    calib_batches: int = option(4, help="batches of 8 training images for taylor/loss importance", ge=1)

    def __post_init__(self) -> None:
        if self.ratio is not None and self.target_macs is not None:
            raise ValueError("give 'ratio' or 'target_macs', not both")
        if self.ratio is None and self.target_macs is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)
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
            only(("iterative_steps", "round_to", "max_layer_ratio", "prune_head"), "'channel'/'depth'")
            return "l1"
        only(("schedule",), "'magnitude'")
        if method == "channel":
            if importance == "loss":
                raise ValueError("importance 'loss' is for method 'depth'; use l1, l2, bn or taylor")
            return importance or "l2"
        only(("global_pruning", "round_to", "max_layer_ratio", "prune_head"), "'channel'")
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
    def needs_data(self) -> bool:
        """Whether the importance criterion needs calibration batches."""
        return self.importance in ("taylor", "loss")


_DEFAULTS = {f.name: f.default for f in fields(PruneOptions)}


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
    epochs_flag="finetune-epochs",
    epochs_help="fine-tuning epochs after pruning (per round with iterative_steps)",
    help="prune the model (unstructured magnitude, dependency-aware channels, or whole blocks), then fine-tune",
)
