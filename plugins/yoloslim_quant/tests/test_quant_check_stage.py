"""The quantize stage's up-front checks: option conflicts while the recipe is parsed, and what the run must provide
(``yoloslim_check_stage``: an ONNX exporter, a calibration split with images) before any stage runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yoloslim import hookimpl
from yoloslim.context import SlimContext
from yoloslim.errors import DataError, ExportError, RecipeError
from yoloslim.plugins import PluginManager
from yoloslim.recipe import Stage, parse_recipe
from yoloslim_quant import plugin


class _OnnxExporter:
    @hookimpl
    def yoloslim_export_formats(self) -> list[str]:
        return ["onnx"]

    @hookimpl
    def yoloslim_export(self, checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> None:
        return None


def _pm(onnx: bool = True) -> PluginManager:
    pm = PluginManager(load_entrypoints=False)
    pm.register(plugin, "quantize")
    if onnx:
        pm.register(_OnnxExporter(), "onnx")
    return pm


def _stage(pm: PluginManager, **options: Any) -> Stage:
    return parse_recipe({"stages": [{"type": "quantize", **options}]}, pm.stage_types()).stages[0]


def _check(pm: PluginManager, stage: Stage, data: Path | None, tmp_path: Path) -> None:
    ctx = SlimContext(
        run_dir=tmp_path / "run", data=None if data is None else str(data), imgsz=64, stage=stage, plugins=pm
    )
    plugin.yoloslim_check_stage(stage=stage, ctx=ctx)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"mode": "qat", "epochs": 0}, ("mode 'qat'", "'epochs' >= 1")),
        ({"mode": "mixed", "precision": "fp16"}, ("precision 'fp16'", "mode ptq")),
        ({"target": "tensorrt", "precision": "w8a16"}, ("target 'tensorrt'", "precision int8")),
        ({"calib_images": 0}, ("key 'calib_images': must be >= 1, got 0",)),
    ],
)
def test_conflicting_options_stop_the_recipe_while_it_is_parsed(options, words):
    with pytest.raises(RecipeError) as error:
        _stage(_pm(), **options)
    msg = str(error.value)
    assert msg.startswith("<recipe>: stage 1 (quantize): ") and "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)


def test_calibration_split_the_dataset_lacks_is_refused_naming_calib_split(tiny_data, tmp_path):
    pm = _pm()
    with pytest.raises(DataError) as error:
        _check(pm, _stage(pm, calib_split="calib"), tiny_data, tmp_path)
    msg = str(error.value)
    assert "\n" not in msg
    assert msg.startswith("stage 'quantize': calib_split 'calib': ")
    assert str(tiny_data) in msg and "no 'calib:' split" in msg and "(train, val, test)" in msg
    assert not (tmp_path / "run").exists()


def test_calibration_split_with_images_passes_and_precisions_without_calibration_ignore_it(tiny_data, tmp_path):
    pm = _pm()
    _check(pm, _stage(pm, calib_split="val"), tiny_data, tmp_path)
    _check(pm, _stage(pm, calib_split="calib", precision="weight_only"), tiny_data, tmp_path)
    _check(pm, _stage(pm, calib_split="calib", precision="fp16"), tiny_data, tmp_path)


def test_static_quantization_without_a_dataset_is_refused(tmp_path):
    pm = _pm()
    with pytest.raises(DataError, match="precision 'int8' calibrates on dataset images; pass --data"):
        _check(pm, _stage(pm), None, tmp_path)


def test_quantize_without_an_onnx_exporter_is_refused_before_any_stage(tiny_data, tmp_path):
    pm = _pm(onnx=False)
    stage = _stage(pm)
    ctx = SlimContext(run_dir=tmp_path / "run", data=str(tiny_data), imgsz=64, stage=stage, plugins=pm)
    with pytest.raises(ExportError) as error:
        pm.call("yoloslim_check_stage", stage=stage, ctx=ctx)
    msg = str(error.value)
    assert "\n" not in msg
    assert msg.startswith("stage 'quantize': quantization starts from an ONNX export")
    assert "format 'onnx'" in msg and "formats available here: none" in msg and "'onnx' plugin" in msg
