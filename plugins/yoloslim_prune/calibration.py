"""Calibration batches and detection-loss gradients for data-driven importance (Taylor, depth ranking)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yoloslim import check_dataset

LOGGER = logging.getLogger("yoloslim.plugin.prune")


def calibration_batches(data: str | Path, imgsz: int, batches: int = 4, batch_size: int = 8) -> list[dict[str, Any]]:
    """Return ``batches`` preprocessed batches of the dataset's training images, without augmentation.

    Args:
        data: Dataset YAML.
        imgsz: Square image size (letterboxed as Ultralytics' validator does).
        batches: Number of batches.
        batch_size: Images per batch.

    Returns:
        Ultralytics batch dicts (``img`` float in [0, 1], ``cls``, ``bboxes``, ``batch_idx``) on the CPU.

    Raises:
        DataError: If the dataset YAML or its images are missing.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset

    data_dict = check_dataset(data)
    cfg = get_cfg(overrides={"imgsz": imgsz, "rect": False, "cache": False, "fraction": 1.0})
    dataset = build_yolo_dataset(cfg, data_dict["train"], batch_size, data_dict, mode="val", stride=32)
    loader = build_dataloader(dataset, batch_size, workers=0, shuffle=False, pin_memory=False, device="cpu")
    out: list[dict[str, Any]] = []
    for batch in loader:
        batch["img"] = batch["img"].float() / 255
        out.append(batch)
        if len(out) >= batches:
            break
    return out


@contextlib.contextmanager
def _loss_ready(model: nn.Module) -> Iterator[None]:
    """Give ``model`` what Ultralytics' loss needs (hyper-parameters as attributes), restoring it afterwards."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg

    old_args, old_criterion = getattr(model, "args", None), getattr(model, "criterion", None)
    own = old_args if isinstance(old_args, dict) else vars(old_args) if old_args is not None else {}
    model.args = get_cfg(overrides={k: v for k, v in own.items() if k in DEFAULT_CFG_DICT})
    model.criterion = None
    try:
        yield
    finally:
        model.args, model.criterion = old_args, old_criterion


def accumulate_gradients(model: nn.Module, batches: list[dict[str, Any]]) -> float:
    """Fill every parameter's ``.grad`` with the detection-loss gradient summed over ``batches``.

    The model stays in eval mode (BatchNorm statistics are not touched); Ultralytics' loss accepts
    the eval-mode output. Returns the mean loss.
    """
    model.eval()
    for p in model.parameters():
        if p.dtype.is_floating_point:
            p.requires_grad_(True)
        p.grad = None
    total = 0.0
    with _loss_ready(model):
        for batch in batches:
            loss, _ = model.loss(batch)
            loss = loss.sum() / max(1, batch["img"].shape[0])
            loss.backward()
            total += float(loss.detach())
    return total / max(1, len(batches))


def batch_loss(model: nn.Module, batches: list[dict[str, Any]]) -> float:
    """Mean detection loss of ``model`` (eval mode, no gradients) over ``batches``."""
    model.eval()
    total = 0.0
    with _loss_ready(model), torch.no_grad():
        for batch in batches:
            loss, _ = model.loss(batch)
            total += float(loss.sum()) / max(1, batch["img"].shape[0])
    return total / max(1, len(batches))


def clear_gradients(model: nn.Module) -> None:
    """Drop every parameter's ``.grad``."""
    for p in model.parameters():
        p.grad = None


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[dict[str, Any]]) -> None:
    """Re-estimate every BatchNorm's running statistics of ``model`` on ``batches`` (their plain average), in place.

    Pruning removes channels the next layers' statistics were measured with; until fine-tuning has moved them
    (momentum 0.03 per step) the pruned model normalises with the wrong mean and variance. The weights are not touched
    and the model is left in eval mode with each BatchNorm's momentum as it was.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    try:
        for batch in batches:
            model(batch["img"])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
