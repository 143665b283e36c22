"""The finalize point: a stage's owner acts once on the final model, before the single write of the stage output."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from yoloslim import SlimContext, StageType, hookimpl, load_checkpoint, option
from yoloslim.pipeline import run_stage
from yoloslim.plugins import PluginManager
from yoloslim.recipe import parse_recipe


@dataclass(frozen=True)
class ZeroOptions:
    layer: int = option(0, help="index of the layer whose convolution is zeroed at the end", ge=0)


class ZeroAtEnd:
    """Zeroes one convolution of the stage's final model (a stand-in for slimming, mask removal, folding)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    @hookimpl
    def yoloslim_stage_types(self):
        return [StageType("zero", options=ZeroOptions, accepts_training=True, default_epochs=1)]

    @hookimpl
    def yoloslim_finalize_model(self, model, stage, ctx):
        if stage.type != "zero":
            return None
        self.calls.append(
            {"weight": _conv(model, stage.options.layer).clone(), "trainer": ctx.trainer, "training": model.training}
        )
        _conv(model, stage.options.layer).zero_()  # in place, as Torch-Pruning prunes: returning it says "changed"
        return model


def _conv(model, layer: int) -> torch.Tensor:
    return model.model[layer].conv.weight.data


def _run(tmp_path, tiny_data, ckpt, epochs: int, plugin: ZeroAtEnd):
    pm = PluginManager()
    pm.register(plugin, "zero")
    stage = parse_recipe(
        {
            "stages": [
                {
                    "type": "zero",
                    "layer": 1,
                    "epochs": epochs,
                    "train": {"batch": 8, "warmup_epochs": 0, "val": False, "amp": False},
                }
            ]
        },
        pm.stage_types(),
    ).stages[0]
    ctx = SlimContext(
        run_dir=tmp_path, data=str(tiny_data), imgsz=64, stage=stage, stage_dir=tmp_path / "01_zero", plugins=pm
    )
    return run_stage(stage, ckpt, ctx)


def test_finalize_acts_once_on_the_best_model_and_only_the_stage_output_changes(tmp_path, tiny_data, tiny_ckpt):
    plugin = ZeroAtEnd()
    out = _run(tmp_path, tiny_data, tiny_ckpt, 1, plugin)
    assert len(plugin.calls) == 1
    call = plugin.calls[0]
    assert call["trainer"] is None and not call["training"]  # training is over; an eval-mode model
    best, _ = load_checkpoint(tmp_path / "01_zero" / "train" / "weights" / "best.pt")
    assert torch.equal(call["weight"], _conv(best, 1))  # finalize received best.pt's model
    assert _conv(best, 1).abs().sum() > 0

    final, ckpt = load_checkpoint(out)
    assert out == tmp_path / "01_zero" / "zero.pt"
    assert _conv(final, 1).abs().sum() == 0
    assert ckpt["yoloslim"]["finalized_from"].endswith("best.pt") and ckpt["train_args"]["batch"] == 8
    last, _ = load_checkpoint(tmp_path / "01_zero" / "train" / "weights" / "last.pt")
    assert _conv(last, 1).abs().sum() > 0  # training's own files stay the model training saw


def test_without_epochs_finalize_gets_the_transformed_model(tmp_path, tiny_data, tiny_ckpt):
    plugin = ZeroAtEnd()
    out = _run(tmp_path, tiny_data, tiny_ckpt, 0, plugin)
    original, _ = load_checkpoint(tiny_ckpt)
    assert len(plugin.calls) == 1 and torch.equal(plugin.calls[0]["weight"], _conv(original, 1))
    final, _ = load_checkpoint(out)
    assert _conv(final, 1).abs().sum() == 0 and not (tmp_path / "01_zero" / "train").exists()


def test_a_stage_nobody_finalizes_keeps_ultralytics_best_pt_as_its_output(tmp_path, tiny_data, tiny_ckpt):
    from yoloslim.plugins import get_plugin_manager

    pm = get_plugin_manager()
    stage = parse_recipe(
        {
            "stages": [
                {"type": "finetune", "epochs": 1, "train": {"batch": 8, "warmup_epochs": 0, "val": False, "amp": False}}
            ]
        },
        pm.stage_types(),
    ).stages[0]
    ctx = SlimContext(
        run_dir=tmp_path, data=str(tiny_data), imgsz=64, stage=stage, stage_dir=tmp_path / "01_ft", plugins=pm
    )
    out = run_stage(stage, tiny_ckpt, ctx)
    assert out.read_bytes() == (tmp_path / "01_ft" / "train" / "weights" / "best.pt").read_bytes()
