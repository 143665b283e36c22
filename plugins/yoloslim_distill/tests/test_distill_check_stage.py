"""The distill stage's up-front checks (``yoloslim_check_stage``): the teacher, before any stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, ModelError, RecipeError
from yoloslim.plugins import get_plugin_manager
from yoloslim.recipe import Stage, parse_recipe
from yoloslim_distill import plugin


def _names(data: Path) -> dict[int, str]:
    from yoloslim.dataset import check_dataset

    return dict(check_dataset(data)["names"])


def _teacher(path: Path, names: dict[int, str], cfg: str = "yolov8n.yaml") -> Path:
    """An untrained detection checkpoint of ``cfg`` with ``names`` (no training: the checks never run it)."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=len(names), verbose=False)
    model.names = dict(names)
    return save_checkpoint(model, path)


def _stage(**options) -> Stage:
    return parse_recipe(
        {"stages": [{"type": "distill", "epochs": 1, **options}]}, get_plugin_manager().stage_types()
    ).stages[0]


def _check(stage: Stage, data: Path, tmp_path: Path) -> None:
    ctx = SlimContext(run_dir=tmp_path / "run", data=str(data), imgsz=64, stage=stage, plugins=get_plugin_manager())
    plugin.yoloslim_check_stage(stage=stage, ctx=ctx)


def _one_line(error: pytest.ExceptionInfo, *words: str) -> str:
    msg = str(error.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)
    return msg


def test_teacher_with_the_datasets_classes_passes_and_writes_nothing(tiny_data, tmp_path):
    teacher = _teacher(tmp_path / "t.pt", _names(tiny_data))
    stage = _stage(teacher=str(teacher))
    ctx = SlimContext(
        run_dir=tmp_path / "run", data=str(tiny_data), imgsz=64, stage=stage, plugins=get_plugin_manager()
    )
    assert ctx.get_plugins().call("yoloslim_check_stage", stage=stage, ctx=ctx) == []
    assert not (tmp_path / "run").exists()


def test_missing_teacher_is_refused_naming_the_option_and_the_path(tiny_data, tmp_path):
    missing = tmp_path / "nope" / "teacher.pt"
    with pytest.raises(ModelError) as error:
        _check(_stage(teacher=str(missing)), tiny_data, tmp_path)
    _one_line(error, "stage 'distill'", "teacher", str(missing), "not found")


def test_unloadable_teacher_is_refused_naming_the_option_and_the_path(tiny_data, tmp_path):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError) as error:
        _check(_stage(teacher=str(bad)), tiny_data, tmp_path)
    _one_line(error, "option 'teacher'", str(bad), "not a loadable Ultralytics checkpoint")


def test_teacher_of_another_task_is_refused_naming_the_option_and_the_task(tiny_data, tmp_path):
    from ultralytics import YOLO

    cls = tmp_path / "cls.pt"
    YOLO("yolov8n-cls.yaml").save(cls)
    with pytest.raises(ModelError) as error:
        _check(_stage(teacher=str(cls)), tiny_data, tmp_path)
    _one_line(error, "option 'teacher'", str(cls), "'classify' model", "task=detect")


def test_teacher_with_other_class_names_is_refused_naming_both_lists(tiny_data, tmp_path):
    names = _names(tiny_data)
    other = {i: f"other{i}" for i in names}
    teacher = _teacher(tmp_path / "other.pt", other)
    with pytest.raises(DataError) as error:
        _check(_stage(teacher=str(teacher)), tiny_data, tmp_path)
    _one_line(error, "teacher", str(teacher), str(list(other.values())), str(list(names.values())))


def test_requested_ld_with_a_teacher_without_dfl_bins_is_refused_but_default_methods_pass(tiny_data, tmp_path):
    teacher = _teacher(tmp_path / "t26.pt", _names(tiny_data), "yolo26n.yaml")
    with pytest.raises(RecipeError) as error:
        _check(_stage(teacher=str(teacher), method="logit,ld"), tiny_data, tmp_path)
    _one_line(error, "method 'ld'", str(teacher), "reg_max 1", "'method'")
    _check(_stage(teacher=str(teacher)), tiny_data, tmp_path)  # the defaults leave ld out for this pair
