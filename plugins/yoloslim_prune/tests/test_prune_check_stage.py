"""The prune stage's up-front check (``yoloslim_check_stage``): a data-driven importance needs labelled train images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from yoloslim.context import SlimContext
from yoloslim.errors import DataError
from yoloslim.plugins import PluginManager
from yoloslim.recipe import Stage, parse_recipe
from yoloslim_prune import plugin


def _unlabelled(tiny_data: Path, out: Path) -> Path:
    """A copy of a few of the tiny dataset's images without any label file (real footage)."""
    src = yaml.safe_load(Path(tiny_data).read_text())
    root = Path(src["path"]) if Path(src["path"]).is_absolute() else Path(tiny_data).parent / src["path"]
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True)
        for image in sorted((root / "images" / split).glob("*.png"))[:2]:
            shutil.copy(image, out / "images" / split / image.name)
    data = out / "data.yaml"
    data.write_text(
        yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val", "names": src["names"]})
    )
    return data


def _check(stage: Stage, data: Path, tmp_path: Path) -> None:
    pm = PluginManager(load_entrypoints=False)
    pm.register(plugin, "prune")
    ctx = SlimContext(run_dir=tmp_path / "run", data=str(data), imgsz=64, stage=stage, plugins=pm)
    assert pm.call("yoloslim_check_stage", stage=stage, ctx=ctx) == []


def _stage(**options) -> Stage:
    from yoloslim_prune.options import STAGE_TYPE

    return parse_recipe({"stages": [{"type": "prune", **options}]}, {"prune": STAGE_TYPE}).stages[0]


@pytest.mark.parametrize("options", [{"method": "channel", "importance": "taylor"}, {"method": "depth"}])
def test_loss_based_importance_on_an_unlabelled_train_split_is_refused_naming_importance(options, tiny_data, tmp_path):
    data = _unlabelled(tiny_data, tmp_path / "footage")
    with pytest.raises(DataError) as error:
        _check(_stage(**options), data, tmp_path)
    msg = str(error.value)
    assert "\n" not in msg
    assert msg.startswith("stage 'prune': importance '")
    assert str(data) in msg and "no labels" in msg and "set 'importance' to l1, l2 or bn" in msg
    assert not (tmp_path / "run").exists()


def test_loss_based_importance_on_labelled_data_and_magnitude_on_unlabelled_data_pass(tiny_data, tmp_path):
    _check(_stage(method="channel", importance="taylor"), tiny_data, tmp_path)
    _check(_stage(method="channel", importance="l2"), _unlabelled(tiny_data, tmp_path / "footage"), tmp_path)


def _pickled_globals(path, prefix: str) -> set[str]:
    """The globals a torch.save file's pickle names (torch's own scan skips those already allowed in this process)."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {
        str(arg).replace(" ", ".")
        for op, arg, _ in pickletools.genops(data)
        if op.name == "GLOBAL" and str(arg).startswith(prefix)
    }


def test_pruned_checkpoint_classes_are_declared_and_a_split_block_checkpoint_loads_without_trust(tmp_path):
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim import SplitC2f, SplitC2PSA, make_prunable
    from yoloslim.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)  # C3k2 and C2PSA: both split blocks
    assert make_prunable(model) > 0
    path = save_checkpoint(model, tmp_path / "split.pt")
    assert _pickled_globals(path, "yoloslim") == {"yoloslim.structure.SplitC2f", "yoloslim.structure.SplitC2PSA"}
    loaded, _ = load_checkpoint(path, trust=False)
    assert {type(m) for m in loaded.modules()} >= {SplitC2f, SplitC2PSA}


def test_a_checkpoint_pruned_by_an_earlier_version_still_loads_without_trust(tmp_path, monkeypatch):
    """Before 0.2 the split blocks were pickled as yoloslim_prune.modules.*; the safe loader allows that alias."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim import SplitC2f, SplitC2PSA, make_prunable
    from yoloslim.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    make_prunable(model)
    for cls in (SplitC2f, SplitC2PSA):
        monkeypatch.setattr(cls, "__module__", "yoloslim_prune.modules")
    path = save_checkpoint(model, tmp_path / "old.pt")
    monkeypatch.undo()
    assert _pickled_globals(path, "yoloslim") == {
        "yoloslim_prune.modules.SplitC2f",
        "yoloslim_prune.modules.SplitC2PSA",
    }
    loaded, _ = load_checkpoint(path, trust=False)
    assert {type(m) for m in loaded.modules()} >= {SplitC2f, SplitC2PSA}


def test_recalibration_without_data_is_refused_and_unlabelled_images_are_enough(tiny_data, tmp_path):
    stage = _stage(method="channel", importance="l2", recalibrate=True)
    pm = PluginManager(load_entrypoints=False)
    pm.register(plugin, "prune")
    ctx = SlimContext(run_dir=tmp_path / "run", data=None, imgsz=64, stage=stage, plugins=pm)
    with pytest.raises(DataError) as error:
        pm.call("yoloslim_check_stage", stage=stage, ctx=ctx)
    assert str(error.value) == (
        "stage 'prune': 'recalibrate' re-estimates BatchNorm statistics on the stage's images; pass --data"
    )
    _check(stage, _unlabelled(tiny_data, tmp_path / "footage"), tmp_path)


def test_recalibrate_applies_to_channel_and_depth_only():
    with pytest.raises(Exception, match="'recalibrate' applies to method 'channel'/'depth', not 'magnitude'"):
        _stage(method="magnitude", ratio=0.5, recalibrate=True)
