"""Why a channel-pruned official COCO nano model loses its detections before any fine-tuning, and two repairs tried.

The official YOLO11n, channel-pruned (Taylor on the street film's pseudo-labels, the prune stage's capped global
allocation, round_to 16) to ``--macs`` fractions, is scored by its agreement with the unpruned original (mAP50-95 and
F1@0.5 against the original's detections at conf 0.25, PyTorch FP32) on the first 30 frames of the held-out street
stretch, as pruned and after each repair:

- ``recal``: every BatchNorm's statistics re-estimated on 64 pseudo-labelled training frames (the prune stage's
  ``recalibrate`` option); also applied to the unpruned original, as a control;
- ``comp``: mean compensation: each removed channel's mean input (measured on 32 frames) times the consuming
  convolution's summed weights is folded into that layer's BatchNorm running mean (or bias), group by group as
  Torch-Pruning removes the channels; exact for a constant channel, first-order otherwise.

Run from the repository root after ``make real`` and one label-free run that cached the pseudo-labels (e.g.
``bench/recovery.py --job lf-prune``): ``.venv/bin/python research/prune_collapse.py --macs 0.9 0.8``.
Prints one line per row. Measured 2026-12-03 (bench/results/recovery.md's notes).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


class MeanCompensation:
    """Folds removed input channels' means into the consuming layers; call before each ``group.prune()``."""

    def __init__(self, net: nn.Module, means: dict[str, torch.Tensor]) -> None:
        convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1}
        self.means = {convs[n]: m.clone() for n, m in means.items() if n in convs}
        self.bn = {
            m.conv: m.bn
            for m in net.modules()
            if isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
        }

    @torch.no_grad()
    def __call__(self, graph: Any, group: Any) -> None:
        for dep, idxs in group:
            conv = dep.target.module
            if conv not in self.means or graph.is_out_channel_pruning_fn(dep.handler):
                continue
            means = self.means[conv]
            removed = torch.tensor(sorted({int(getattr(i, "idx", i)) for i in idxs}), dtype=torch.long)
            delta = conv.weight[:, removed].sum(dim=(2, 3)).double() @ means[removed].double()
            bn = self.bn.get(conv)
            if bn is not None:
                bn.running_mean -= delta.to(bn.running_mean)
            elif conv.bias is not None:
                conv.bias += delta.to(conv.bias)
            keep = torch.ones(means.numel(), dtype=torch.bool)
            keep[removed] = False
            self.means[conv] = means[keep]


@torch.no_grad()
def input_means(model: nn.Module, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean input per channel of every ungrouped convolution (eval mode)."""
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].double()
            sums[name] = sums.get(name, 0) + x.sum(dim=(0, 2, 3))
            counts[name] = counts.get(name, 0) + x.numel() // x.shape[1]

        return record

    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in convs]
    model.eval()
    for x in images:
        model(x)
    for h in handles:
        h.remove()
    return {n: (s / counts[n]).float() for n, s in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--macs", type=float, nargs="+", default=[0.9, 0.8])
    a = ap.parse_args()
    import torch_pruning as tp
    import yaml

    import yoloslim_prune.channel_pruner as cp
    from yoloslim import make_prunable
    from yoloslim.agreement import measure_agreement
    from yoloslim.checkpoint import load_checkpoint
    from yoloslim.footage import FootageOptions, pseudo_labelled_dataset
    from yoloslim.measurement.inputs import model_input
    from yoloslim_prune.calibration import accumulate_gradients, calibration_batches, recalibrate_batchnorm

    torch.set_num_threads(2)
    yolo11 = ROOT / "weights" / "official" / "yolo11n.pt"
    data = pseudo_labelled_dataset(
        ROOT / "datasets" / "real" / "videos" / "street.mp4",
        yolo11,
        640,
        FootageOptions(frames=200, first=0, last=1200),
    )
    original, _ = load_checkpoint(yolo11)
    original = original.float().eval()
    frames = sorted((ROOT / "datasets" / "real" / "heldout" / "street_late").glob("*.jpg"))[:30]
    images = [model_input(640, p) for p in frames]
    batches = calibration_batches(data, 640, batches=8, batch_size=8)
    calib = [b["img"] for b in batches[:4]]

    def recal(model: nn.Module) -> nn.Module:
        model = copy.deepcopy(model)
        recalibrate_batchnorm(model, batches)
        return model

    def prune(macs: float, compensate: bool) -> nn.Module:
        model = copy.deepcopy(original)
        means = None
        if compensate:
            probe = copy.deepcopy(original)
            make_prunable(probe)
            means = input_means(probe, calib)
        real_prune = tp.dependency.Group.prune

        def prune_group(group: Any, idxs: Any = None, record_history: bool = True) -> None:
            if means is not None and idxs is None:
                net = group._DG.model
                if getattr(net, "_compensation", None) is None:
                    net._compensation = MeanCompensation(net, means)
                net._compensation(group._DG, group)
            real_prune(group, idxs, record_history)

        tp.dependency.Group.prune = prune_group
        try:
            cp.prune_channels(
                model,
                target_macs=macs,
                importance="taylor",
                global_pruning=True,
                capped=True,
                round_to=16,
                max_layer_ratio=0.75,
                imgsz=640,
                gradients=lambda net: accumulate_gradients(net, batches[:4]),
            )
        finally:
            tp.dependency.Group.prune = real_prune
        model._compensation = None
        return model.eval()

    rows = {"original, recal": recal(original)}
    for macs in a.macs:
        pruned = prune(macs, compensate=False)
        rows[f"{macs}x MACs"] = pruned
        rows[f"{macs}x MACs, recal"] = recal(pruned)
        rows[f"{macs}x MACs, comp"] = prune(macs, compensate=True)

    def runtime(model: nn.Module) -> Any:
        def run(x: Any) -> Any:
            with torch.no_grad():
                return model(torch.from_numpy(x))

        return run

    names = list(rows)
    nc = len(yaml.safe_load(Path(data).read_text())["names"])
    for name, agreement in zip(
        names, measure_agreement(runtime(original), [runtime(rows[n]) for n in names], images, nc)
    ):
        print(
            f"{name}: agreement mAP50-95 {agreement.map50_95:.3f}, F1 {agreement.f1:.3f}, "
            f"boxes {agreement.candidate_boxes}"
        )


if __name__ == "__main__":
    main()
