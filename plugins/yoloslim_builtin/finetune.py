"""The ``finetune`` stage: train the current model with SlimTrainer, every plugin's hooks firing.

It transforms nothing; it is the fine-tuning step a recipe adds after a one-shot stage, and the
stage in which other plugins' training hooks (extra loss terms, schedules) act.
"""

from __future__ import annotations

from yoloslim import StageType, hookimpl


@hookimpl
def yoloslim_stage_types() -> list[StageType]:
    """Declare ``finetune``: no options of its own; ``epochs`` and ``train`` as for every training stage."""
    return [
        StageType(
            "finetune",
            accepts_training=True,
            default_epochs=10,
            help="fine-tune the current model (Ultralytics training with yoloslim hooks)",
        )
    ]
