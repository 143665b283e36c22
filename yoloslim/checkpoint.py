"""Checkpoint I/O: load an Ultralytics checkpoint safely, save one that ``YOLO(path)`` loads, tell a model's format.

Checkpoints are unpickled safely (``weights_only=True`` against an allowlist, :mod:`yoloslim.trust`) through
Ultralytics' ``torch_safe_load`` and set up as Ultralytics' ``load_checkpoint`` does, so a file yoloslim accepts is one
Ultralytics accepts. What this module adds is the guard rails: no code run from a pickle unless trusted, no pip
install of a module named inside a pickle, and an error that names the file and the fix. Saved checkpoints are
stripped (FP16, no optimizer) and written atomically (:mod:`yoloslim.files`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yoloslim.errors import ModelError, one_line
from yoloslim.files import atomic_write_bytes


def model_format(path: str | Path) -> str:
    """Return the format of a model file from its name.

    Args:
        path: Model file path.

    Returns:
        ``"pt"`` for a PyTorch checkpoint, ``"onnx"`` for an ONNX graph, otherwise the lower-case suffix without
        the dot (``"engine"``, ``"torchscript"``, ...; ``""`` for a name without a suffix).
    """
    return Path(path).suffix.lower().lstrip(".")


@contextlib.contextmanager
def _no_autoinstall() -> Iterator[None]:
    """Switch off Ultralytics' pip auto-install while a checkpoint is unpickled.

    A checkpoint that pickles a class from a module this environment lacks makes ``torch_safe_load`` call
    ``check_requirements(module)``, which pip-installs a package of that name unless ``YOLO_AUTOINSTALL`` is
    off. ``check_requirements`` reads the module global ``AUTOINSTALL`` at call time, so clearing it here keeps a
    checkpoint from installing anything whatever the user's environment says.
    """
    from ultralytics.utils import checks

    previous = checks.AUTOINSTALL
    checks.AUTOINSTALL = False
    try:
        yield
    finally:
        checks.AUTOINSTALL = previous


def load_checkpoint(path: str | Path, trust: bool | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load an Ultralytics detection checkpoint safely, then prepare it the way Ultralytics does.

    The file is unpickled with ``weights_only=True`` against an allowlist (:mod:`yoloslim.trust`) unless it is
    trusted; the model is then set up as ``ultralytics.nn.tasks.load_checkpoint`` would (args, task, stride).

    Args:
        path: A ``.pt`` file written by Ultralytics (``best.pt``, ``last.pt``, ``YOLO.save()``) or by yoloslim.
        trust: Unpickle without the allowlist (the file may run code). ``None``: the enclosing
            :func:`yoloslim.trust.trust_scope`, else the ``YOLOSLIM_TRUST_CHECKPOINTS`` environment variable.

    Returns:
        The float32 model in eval mode on the CPU (the checkpoint's EMA if it has one, else its model), not
        fused, and the checkpoint dictionary as stored.

    Raises:
        ModelError: If the file is missing, is not a loadable Ultralytics checkpoint (corrupt, truncated, a plain
            state_dict, a TorchScript archive), needs a class outside the allowlist and is not trusted, pickles a
            class from a module that cannot be imported, or holds a model whose task is not ``detect``.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import guess_model_task

    from yoloslim.trust import OPT_IN, UntrustedCheckpoint, load_checkpoint_dict

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found; pass the path to an existing Ultralytics .pt file")
    if model_format(path) != "pt":
        raise ModelError(f"{path}: not a .pt checkpoint; pass the .pt file Ultralytics wrote (e.g. weights/best.pt)")

    try:
        with _no_autoinstall():
            ckpt = load_checkpoint_dict(str(path), trust)
    except UntrustedCheckpoint as e:
        raise ModelError(
            f"{path}: refused to unpickle '{e.name}', which is not on the allowlist of what a detection checkpoint "
            f"holds (loading it could run code hidden in the file); if you trust where the file came from, pass "
            f"{OPT_IN}"
        ) from None
    except ModuleNotFoundError as e:
        # Ultralytics re-raises some of these with its own message; the module name sits on the original.
        missing = e.name or getattr(e.__cause__, "name", None) or one_line(e)
        raise ModelError(
            f"{path}: the checkpoint needs module '{missing}', which is not importable; install the package that "
            f"provides it (or the yoloslim plugin that wrote the checkpoint) and retry"
        ) from e
    except Exception as e:  # every other way torch.load / Ultralytics can reject a file is "not a checkpoint"
        raise ModelError(
            f"{path}: not a loadable Ultralytics checkpoint ({type(e).__name__}: {one_line(e)}); "
            f"re-save it with YOLO(...).save() or use the best.pt/last.pt that training wrote"
        ) from e

    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            f"{path}: not a loadable Ultralytics checkpoint (no model inside: a state_dict or another tool's file); "
            f"re-save it with YOLO(...).save() or use the best.pt/last.pt that training wrote"
        )
    model = model.float()
    if ckpt.get("modelopt"):  # Ultralytics' own QAT checkpoint: re-apply the fake quantization it learned
        from ultralytics.nn.tasks import restore_qat

        restore_qat(model, ckpt["modelopt"])
    model.args = {**DEFAULT_CFG_DICT, **(ckpt.get("train_args") or {})}
    model.pt_path = str(path)
    model.task = getattr(model, "task", None) or guess_model_task(model)
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    model = model.eval().to("cpu")
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, torch.nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None

    task = getattr(model, "task", None)
    if task != "detect":
        raise ModelError(
            f"{path}: holds a '{task}' model, yoloslim compresses detection models only; "
            f"pass a checkpoint trained with task=detect"
        )
    return model, ckpt


def save_checkpoint(
    model: nn.Module, path: str | Path, train_args: dict[str, Any] | None = None, yoloslim: dict[str, Any] | None = None
) -> Path:
    """Save ``model`` as a stripped Ultralytics checkpoint (FP16, no optimizer) that ``YOLO(path)`` loads.

    Args:
        model: The detection model (not modified).
        path: Destination ``.pt``.
        train_args: Ultralytics arguments to record (``train_args``), e.g. the dataset.
        yoloslim: Provenance recorded under the ``yoloslim`` key (recipe, stage, ...).

    Returns:
        The written path.
    """
    from ultralytics import __version__

    m = deepcopy(model).half().to(memory_format=torch.contiguous_format)
    if hasattr(m, "criterion"):
        m.criterion = None
    for p in m.parameters():
        p.requires_grad_(False)
    if hasattr(m, "args") and not isinstance(m.args, dict):
        m.args = dict(vars(m.args)) if hasattr(m.args, "__dict__") else dict(m.args)
    ckpt = {
        "date": datetime.now().astimezone().isoformat(),
        "version": __version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": m,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": train_args or {},
        "yoloslim": yoloslim or {},
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return atomic_write_bytes(path, buf.getvalue())
