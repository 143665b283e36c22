"""Tests of yoloslim.checkpoint: checkpoints load, or fail with an error that names the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yoloslim.checkpoint import load_checkpoint, model_format
from yoloslim.errors import ModelError


@pytest.fixture(scope="module")
def detect_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained yolov8n saved the way Ultralytics saves checkpoints."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("ckpt") / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(path)
    return path


def test_detection_checkpoint_loads_as_float32_detect_model(detect_pt: Path) -> None:
    model, ckpt = load_checkpoint(detect_pt)
    assert model.task == "detect"
    assert isinstance(ckpt, dict) and "model" in ckpt
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # saved in half, loaded as float32
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) > 3_000_000  # yolov8n, not fused


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "best.pt"
    with pytest.raises(ModelError, match="not found") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "empty", "state_dict"])
def test_unloadable_checkpoint_is_a_one_line_model_error_naming_the_path(
    damage: str, detect_pt: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{damage}.pt"
    if damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif damage == "truncated":
        data = detect_pt.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save(load_checkpoint(detect_pt)[0].state_dict(), path)
    with pytest.raises(ModelError, match="not a loadable Ultralytics checkpoint") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_classification_checkpoint_is_refused_as_not_detect(tmp_path: Path) -> None:
    from ultralytics import YOLO

    path = tmp_path / "cls.pt"
    YOLO("yolov8n-cls.yaml").save(path)
    with pytest.raises(ModelError, match="'classify' model") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_non_pt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .pt checkpoint"):
        load_checkpoint(path)


def test_checkpoint_needing_a_missing_module_names_it_and_installs_nothing(
    detect_pt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from ultralytics.utils import checks

    module_name = "yoloslim_test_vanished_module"
    module_dir = tmp_path / "src"
    module_dir.mkdir()
    (module_dir / f"{module_name}.py").write_text("import torch\n\nclass Gate(torch.nn.Identity):\n    pass\n")
    monkeypatch.syspath_prepend(str(module_dir))
    gate = __import__(module_name).Gate
    model, ckpt = load_checkpoint(detect_pt)
    model.model[0].gate = gate()  # a custom layer, pickled by its import path
    path = tmp_path / "custom.pt"
    torch.save({**ckpt, "model": model, "ema": None}, path)
    sys.path.remove(str(module_dir))
    del sys.modules[module_name]

    # Even with auto-install on and the machine "online", loading must not reach pip.
    installs: list[object] = []

    def fake_check_output(*args: object, **kwargs: object) -> str:
        installs.append(args)
        raise subprocess.CalledProcessError(1, "pip")

    monkeypatch.setattr(checks, "AUTOINSTALL", True)
    monkeypatch.setattr(checks, "ONLINE", True)
    monkeypatch.setattr(checks.subprocess, "check_output", fake_check_output)
    # Untrusted, the unknown class is refused before anything is imported; trusted, its module is looked for.
    with pytest.raises(ModelError, match=f"refused to unpickle '{module_name}.Gate'"):
        load_checkpoint(path)
    with pytest.raises(ModelError, match=f"needs module '{module_name}'") as error:
        load_checkpoint(path, trust=True)
    assert str(path) in str(error.value)
    assert installs == []
    assert checks.AUTOINSTALL is True  # restored after the load


def test_model_format_is_the_lower_case_suffix() -> None:
    assert [model_format(p) for p in ("a/best.pt", "m.ONNX", "m.engine", "noext")] == ["pt", "onnx", "engine", ""]
