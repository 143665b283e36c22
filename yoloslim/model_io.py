"""Load Ultralytics checkpoints and dataset YAMLs, turning every failure into a one-line yoloslim error.

Checkpoints are unpickled safely (``weights_only=True`` against an allowlist, :mod:`yoloslim.trust`) through
Ultralytics' ``torch_safe_load`` and set up as Ultralytics' ``load_checkpoint`` does; datasets go through Ultralytics'
``check_det_dataset``; so a file yoloslim accepts is one Ultralytics accepts. What this module adds is the guard
rails: no code run from a pickle unless trusted, no download, no pip install of a module named inside a pickle, and
an error that names the file and the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from yoloslim.errors import DataError, ModelError

# Splits whose folders check_dataset verifies when the YAML lists them.
_SPLITS = ("train", "val", "test")


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


def _one_line(error: BaseException) -> str:
    """Return the first non-empty line of an exception's message (Ultralytics' messages span lines and emojis)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


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
        missing = e.name or getattr(e.__cause__, "name", None) or _one_line(e)
        raise ModelError(
            f"{path}: the checkpoint needs module '{missing}', which is not importable; install the package that "
            f"provides it (or the yoloslim plugin that wrote the checkpoint) and retry"
        ) from e
    except Exception as e:  # every other way torch.load / Ultralytics can reject a file is "not a checkpoint"
        raise ModelError(
            f"{path}: not a loadable Ultralytics checkpoint ({type(e).__name__}: {_one_line(e)}); "
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


def split_images(data: dict[str, Any], split: str) -> list[Path]:
    """List the image files of one split of a checked dataset, in sorted order.

    Args:
        data: A dataset dictionary as returned by :func:`check_dataset` (paths already resolved).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        Image paths, as Ultralytics' dataloader would find them (folders searched recursively, ``.txt`` lists
        read line by line relative to the list's folder).
    """
    from ultralytics.data.utils import IMG_FORMATS

    sources = data.get(split) or []
    images: list[Path] = []
    for source in sources if isinstance(sources, list) else [sources]:
        source = Path(source)
        if source.is_dir():
            images += [p for p in source.rglob("*") if p.suffix.lower().lstrip(".") in IMG_FORMATS]
        elif source.is_file() and source.suffix == ".txt":
            for line in source.read_text().splitlines():
                line = line.strip()
                if line:
                    p = Path(line) if Path(line).is_absolute() else (source.parent / line)
                    if p.suffix.lower().lstrip(".") in IMG_FORMATS:
                        images.append(p.resolve())
        elif source.is_file() and source.suffix.lower().lstrip(".") in IMG_FORMATS:
            images.append(source)
    return sorted(images)


def has_labels(data: dict[str, Any], split: str) -> bool:
    """Whether any image of a checked dataset's split has a label file where Ultralytics looks for it.

    A split without a single label file is unlabelled (e.g. real footage): its quality measure is agreement with the
    original (:mod:`yoloslim.agreement`), not mAP.
    """
    from ultralytics.data.utils import img2label_paths

    images = split_images(data, split)
    return any(Path(p).is_file() for p in img2label_paths([str(i) for i in images]))


def check_dataset(data: str | Path) -> dict[str, Any]:
    """Validate a YOLO-format dataset YAML through Ultralytics' ``check_det_dataset``, offline.

    Args:
        data: Path to the dataset YAML (``path``/``train``/``val``/``names`` as Ultralytics expects).

    Returns:
        The dataset dictionary from ``check_det_dataset``: split paths resolved, ``names`` and ``nc`` filled in.

    Raises:
        DataError: If the YAML is missing, unreadable or not UTF-8 text (a binary file), lacks ``names`` (or
            ``nc``), ``train`` or ``val``, or a listed split points at a folder that does not exist or holds no
            images. Label and image contents are checked by :mod:`yoloslim.dataset_checks` for the split a
            command reads.
    """
    from ultralytics.data.utils import check_det_dataset

    file = Path(data)
    if file.suffix.lower() not in {".yaml", ".yml"}:
        raise DataError(f"{file}: not a dataset YAML; pass the .yaml file that lists train/val/names")
    if not file.is_file():
        raise DataError(f"{file}: dataset YAML not found; pass the path to an existing dataset .yaml file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{file}: not a text file (byte {e.start} is not UTF-8); pass the dataset YAML, saved as UTF-8 text"
        ) from e
    except OSError as e:
        raise DataError(f"{file}: cannot read the dataset YAML ({e.strerror or _one_line(e)}); check the file") from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{file}: cannot read the dataset YAML ({_one_line(e)}); fix its syntax") from e
    if not isinstance(raw, dict):
        raise DataError(f"{file}: dataset YAML is not a mapping; it needs path/train/val/names keys")
    if raw.get("names") is None and raw.get("nc") is None:
        raise DataError(f"{file}: dataset YAML has no 'names:'; add the class names, e.g. names: {{0: person}}")
    for key in ("train", "val"):
        if not raw.get(key):
            raise DataError(f"{file}: dataset YAML has no '{key}:'; add the {key} image folder (relative to path:)")

    try:
        # autodownload=False: a YAML with a 'download:' key must not fetch anything; a missing split is an error.
        checked = check_det_dataset(str(file), autodownload=False)
    except Exception as e:  # SyntaxError/TypeError/FileNotFoundError from Ultralytics' checks
        raise DataError(f"{file}: {_one_line(e)}; fix the dataset YAML or the folders it names") from e

    for split in _SPLITS:
        if not checked.get(split):
            continue
        sources = checked[split] if isinstance(checked[split], list) else [checked[split]]
        for source in sources:
            if not os.path.exists(source):
                raise DataError(
                    f"{file}: {split} images not found at '{source}'; fix '{split}:' (and 'path:') in the YAML"
                )
        if not split_images(checked, split):
            raise DataError(
                f"{file}: no images in the {split} split ({', '.join(map(str, sources))}); put images there "
                f"or point '{split}:' at the folder that has them"
            )
    return checked
