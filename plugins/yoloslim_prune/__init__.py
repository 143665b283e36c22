"""Pruning for yoloslim: unstructured, dependency-aware channel, and depth pruning of Ultralytics YOLO detectors.

The recipe stage ``prune`` and the command ``yoloslim prune`` come from :mod:`yoloslim_prune.plugin`. The
functions below work on a loaded ``DetectionModel`` directly::

    from yoloslim import load_checkpoint
    from yoloslim_prune import prune_channels

    model, _ = load_checkpoint("best.pt")
    prune_channels(model, target_macs=0.5, importance="l2", round_to=8)
"""

from yoloslim_prune.channel_pruner import gflops, prune_channels
from yoloslim_prune.depth_pruner import prune_depth
from yoloslim_prune.magnitude import apply_masks, cubic_sparsity, magnitude_masks, sparsity

__all__ = [
    "SplitC2PSA",
    "SplitC2f",
    "apply_masks",
    "cubic_sparsity",
    "gflops",
    "magnitude_masks",
    "make_prunable",
    "prune_channels",
    "prune_depth",
    "sparsity",
]
