"""The export stage's up-front check (``yoloslim_check_stage``): a format some loaded plugin exports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from yoloslim import hookimpl
from yoloslim.context import SlimContext
from yoloslim.errors import ExportError
from yoloslim.plugins import PluginManager
from yoloslim.recipe import Stage, parse_recipe
from yoloslim_builtin import export_stage


class _Exporter:
    """An export plugin that declares ``formats`` (or, with None, implements no ``yoloslim_export_formats``)."""

    def __init__(self, formats: list[str]) -> None:
        self.formats = formats

    @hookimpl
    def yoloslim_export_formats(self) -> list[str]:
        return self.formats

    @hookimpl
    def yoloslim_export(self, checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> None:
        return None


class _UndeclaredExporter:
    """An older export plugin: ``yoloslim_export`` without ``yoloslim_export_formats``."""

    @hookimpl
    def yoloslim_export(self, checkpoint: Path, fmt: str, out: Path, options: dict[str, Any], ctx: Any) -> None:
        return None


def _pm(**exporters: Any) -> PluginManager:
    pm = PluginManager(load_entrypoints=False)
    pm.register(export_stage, "export")
    for name, exporter in exporters.items():
        pm.register(exporter, name)
    return pm


def _ctx(pm: PluginManager, fmt: str, tmp_path: Path) -> tuple[Stage, SlimContext]:
    stage = parse_recipe({"stages": [{"type": "export", "format": fmt}]}, pm.stage_types()).stages[0]
    return stage, SlimContext(run_dir=tmp_path / "run", imgsz=64, stage=stage, plugins=pm)


def test_export_format_no_loaded_plugin_writes_is_refused_listing_the_formats_available(tmp_path):
    pm = _pm(onnx=_Exporter(["onnx"]), trt=_Exporter(["engine"]))
    stage, ctx = _ctx(pm, "tflite", tmp_path)
    with pytest.raises(ExportError) as error:
        pm.call("yoloslim_check_stage", stage=stage, ctx=ctx)
    msg = str(error.value)
    assert msg == (
        "stage 'export': option 'format': no loaded plugin exports format 'tflite'; formats available "
        "here: engine, onnx; set 'format' to one of them or install a plugin that exports 'tflite'"
    )
    assert not (tmp_path / "run").exists()


def test_export_format_a_loaded_plugin_declares_passes(tmp_path):
    pm = _pm(onnx=_Exporter(["onnx"]), trt=_Exporter([]))  # an exporter without its runtime declares nothing
    stage, ctx = _ctx(pm, "onnx", tmp_path)
    assert export_stage.yoloslim_check_stage(stage=stage, ctx=ctx) is None


def test_export_without_any_export_plugin_says_to_enable_the_onnx_plugin(tmp_path):
    pm = _pm()
    stage, ctx = _ctx(pm, "onnx", tmp_path)
    with pytest.raises(ExportError) as error:
        export_stage.yoloslim_check_stage(stage=stage, ctx=ctx)
    msg = str(error.value)
    assert "\n" not in msg
    assert "option 'format'" in msg and "format 'onnx', nor any other" in msg
    assert "enable yoloslim_deploy's 'onnx' plugin" in msg and "YOLOSLIM_DISABLE_PLUGINS" in msg


def test_an_exporter_that_declares_no_formats_hook_leaves_every_format_possible(tmp_path):
    pm = _pm(onnx=_Exporter(["onnx"]), old=_UndeclaredExporter())
    stage, ctx = _ctx(pm, "tflite", tmp_path)
    assert pm.export_formats() is None
    assert export_stage.yoloslim_check_stage(stage=stage, ctx=ctx) is None
