"""Which distillation methods a teacher/student pair supports; the default methods adapt, requested ones are checked.

``ld`` distils the DFL bins of each box side, so it needs the same number of bins on both models, and more than
one: YOLO26 (``reg_max: 1``) regresses the box distances directly and has no distribution to distil. A stage
without ``method`` leaves such a default method out with a log line (and takes ``cwd`` in ``ld``'s place); a
method the user named (in ``method`` or ``weights``) that the pair cannot support stops the stage with one line
before any training. Every method needs the same feature levels and strides on both models.
"""

from __future__ import annotations

from dataclasses import replace

from yoloslim import ModelError, RecipeError

from .adapters import HeadInfo
from .options import DEFAULT_WEIGHTS, LD_STAND_IN, DistillOptions


def _bins(reg_max: int) -> str:
    return f"{reg_max} DFL bins per box side" if reg_max > 1 else "no DFL bins (reg_max 1, as in YOLO26)"


def unsupported(method: str, student: HeadInfo, teacher: HeadInfo) -> str | None:
    """Why ``method`` cannot distil ``teacher`` into ``student`` ("distils ..., but ..."), or None when it can."""
    if method != "ld":
        return None
    if student.reg_max == teacher.reg_max == 1:
        return "distils the box bins of the DFL, but neither model has any (reg_max 1, as in YOLO26)"
    if student.reg_max != teacher.reg_max:
        return (
            f"distils the box bins of the DFL, but the teacher has {_bins(teacher.reg_max)} and the "
            f"student {_bins(student.reg_max)}"
        )
    return None


def check_requested_for_teacher(opts: DistillOptions, teacher: HeadInfo, where: str = "stage 'distill'") -> None:
    """Raise RecipeError when the user asked for a method that ``teacher`` can distil into no student.

    The checks that need the student as well are :func:`fit_methods`'s, when the stage starts. Today only ``ld`` has
    such a constraint: a teacher without DFL bins (reg_max 1, as in YOLO26) has no box distribution to distil.
    """
    if "ld" in opts.loss_weights and "ld" not in opts.defaulted and teacher.reg_max <= 1:
        raise RecipeError(
            f"{where}: method 'ld' distils the box bins of the DFL, but teacher '{opts.teacher}' has "
            f"{_bins(teacher.reg_max)}; remove 'ld' from 'method' and 'weights', or leave 'method' "
            "unset to use the default methods that fit"
        )


def check_heads(student: HeadInfo, teacher: HeadInfo, teacher_path: str) -> None:
    """Raise ModelError when the two heads see different feature levels or strides (no method can then compare them)."""
    if len(student.channels) != len(teacher.channels):
        raise ModelError(
            f"teacher '{teacher_path}' feeds its head {len(teacher.channels)} feature levels but the "
            f"student {len(student.channels)}; distil between detectors with the same levels"
        )
    if student.anchors != teacher.anchors:
        raise ModelError(
            f"teacher '{teacher_path}' predicts {teacher.anchors} anchors where the student predicts "
            f"{student.anchors} (different strides); distil between detectors with the same strides"
        )


def fit_methods(
    opts: DistillOptions, student: HeadInfo, teacher: HeadInfo, where: str = "stage 'distill'"
) -> tuple[DistillOptions, list[str]]:
    """The options with the default methods the pair cannot use left out, and one note per method left out.

    A default ``ld`` left out is replaced by :data:`~.options.LD_STAND_IN` at its default weight (unless already
    active), so the defaults still distil more than the class scores.

    Args:
        opts: The stage's options (``opts.defaulted`` names the methods that may be left out).
        student: The student's head, from :func:`yoloslim_distill.adapters.head_info`.
        teacher: The teacher's head.
        where: Names the stage in error messages.

    Raises:
        ModelError: When the heads see different feature levels or strides.
        RecipeError: When a method the user asked for cannot distil this pair, naming it and the fix.
    """
    check_heads(student, teacher, opts.teacher)
    weights: dict[str, float] = {}
    notes: list[str] = []
    for method, weight in opts.loss_weights.items():
        reason = unsupported(method, student, teacher)
        if reason is None:
            weights[method] = weight
        elif method in opts.defaulted:
            stand_in = method == "ld" and LD_STAND_IN not in opts.loss_weights
            notes.append(
                f"'{method}' left out of the default methods: it {reason}"
                + (f"; '{LD_STAND_IN}' (neck features) distils in its place" if stand_in else "")
            )
            if stand_in:
                weights[LD_STAND_IN] = DEFAULT_WEIGHTS[LD_STAND_IN]
        else:
            raise RecipeError(
                f"{where}: method '{method}' {reason} (teacher '{opts.teacher}'); remove '{method}' from "
                "'method' and 'weights', or leave 'method' unset to use the default methods that fit"
            )
    if weights == opts.loss_weights:  # every method fits: the options stay as the user gave them
        return opts, notes
    if not weights:
        raise RecipeError(
            f"{where}: none of the methods fits this teacher/student pair ({'; '.join(notes)}); "
            "choose 'method' from those the notes allow"
        )
    return replace(opts, method=list(weights), weights=weights), notes
