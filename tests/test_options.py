"""Options declared once: one dataclass gives recipe validation, CLI flags with defaults, the listing and the docs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from yoloslim import REQUIRED, PluginError, RecipeError, StageType, option, options_dict
from yoloslim.options import build_options, option_specs
from yoloslim.recipe import parse_recipe, parse_train_words
from yoloslim_test_support import ROOT, assert_one_line_error, run_main


@dataclass(frozen=True)
class Opts:
    teacher: str = option(help="a required path")
    ratio: float = option(0.3, help="fraction removed", ge=0.0, lt=1.0)
    steps: int = option(1, help="rounds", ge=1)
    mode: str = option("fast", help="how", choices=("fast", "slow"))
    keep: bool = option(True, help="keep it")
    size: int | None = option(None, help="auto unless given", gt=0)
    window: tuple[int, int] | None = option(None, help="START,END")
    names: str | list[str] | None = option(None, help="comma-separated or a list")

    def check(self, epochs: int) -> None:
        if self.mode == "slow" and epochs == 0:
            raise ValueError("mode 'slow' trains; give 'epochs' >= 1")


TYPES = {
    "t": StageType(
        "t", options=Opts, accepts_training=True, default_epochs=2, train_defaults={"warmup_epochs": 0, "lr0": 0.001}
    )
}


def test_specs_come_from_the_annotations_and_fields():
    specs = option_specs(Opts)
    assert list(specs) == ["teacher", "ratio", "steps", "mode", "keep", "size", "window", "names"]
    assert specs["teacher"].required and specs["teacher"].default is REQUIRED
    assert specs["ratio"].types == (float,) and specs["ratio"].range_text() == "[0, 1)"
    assert specs["size"].nullable and specs["size"].range_text() == "> 0" and specs["size"].default_text() == "auto"
    assert specs["window"].types == (tuple,) and specs["window"].item_type is int
    assert specs["names"].types == (str, list) and specs["mode"].choices == ("fast", "slow")


def test_values_are_checked_converted_and_defaults_filled():
    opts = build_options(Opts, {"teacher": "t.pt", "ratio": 0, "window": [2, 5], "names": ["a", "b"]})
    assert opts == Opts(teacher="t.pt", ratio=0.0, window=(2, 5), names=["a", "b"])
    assert isinstance(opts.ratio, float)
    assert options_dict(opts) == {
        "teacher": "t.pt",
        "ratio": 0.0,
        "steps": 1,
        "mode": "fast",
        "keep": True,
        "size": None,
        "window": [2, 5],
        "names": ["a", "b"],
    }


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, "missing required key 'teacher' (a required path)"),
        ({"teacher": 3}, "key 'teacher': expected str, got int 3"),
        ({"teacher": "t", "ratio": 1.0}, "key 'ratio': must be [0, 1), got 1.0"),
        ({"teacher": "t", "ratio": "half"}, "key 'ratio': expected float, got str 'half'"),
        ({"teacher": "t", "steps": 0}, "key 'steps': must be >= 1, got 0"),
        ({"teacher": "t", "steps": 1.5}, "key 'steps': expected int, got float 1.5"),
        ({"teacher": "t", "keep": "yes"}, "key 'keep': expected bool, got str 'yes'"),
        ({"teacher": "t", "steps": True}, "key 'steps': expected int, got bool True"),
        ({"teacher": "t", "mode": "medium"}, "key 'mode': expected one of ['fast', 'slow'], got 'medium'"),
        ({"teacher": "t", "size": 0}, "key 'size': must be > 0, got 0"),
        ({"teacher": "t", "window": [1, "x"]}, "key 'window': expected a list of int, got an item str 'x'"),
        ({"teacher": "t", "ratio": None}, "key 'ratio': expected float, got null"),
        ({"teacher": "t", "mode": "slow"}, "mode 'slow' trains; give 'epochs' >= 1"),
    ],
)
def test_bad_values_are_one_recipe_error_naming_the_key(raw, message):
    with pytest.raises(RecipeError) as e:
        build_options(Opts, raw, 0, "r.yaml: stage 1 (t)")
    assert str(e.value) == f"r.yaml: stage 1 (t): {message}"


def test_check_sees_the_stage_epochs_at_recipe_validation():
    rec = parse_recipe({"stages": [{"type": "t", "teacher": "x", "mode": "slow", "epochs": 1}]}, TYPES)
    assert rec.stages[0].options.mode == "slow"
    with pytest.raises(RecipeError, match=r"stage 1 \(t\): mode 'slow' trains"):
        parse_recipe({"stages": [{"type": "t", "teacher": "x", "mode": "slow", "epochs": 0}]}, TYPES)


def test_mutable_default_and_unsupported_type_are_the_plugin_authors_errors():
    with pytest.raises(TypeError, match="immutable"):
        option([1, 2])

    @dataclass(frozen=True)
    class Bad:
        path: Path = option(Path("x"))

    with pytest.raises(PluginError, match=r"Bad.path: option type .* is not supported"):
        option_specs(Bad)


def test_stage_type_train_defaults_yield_to_recipe_stage_and_command_line():
    rec = parse_recipe(
        {
            "train": {"lr0": 0.01},
            "stages": [
                {"type": "t", "teacher": "x"},
                {"type": "t", "name": "t2", "teacher": "x", "train": {"warmup_epochs": 1}},
            ],
        },
        TYPES,
    )
    assert rec.stages[0].train == {"warmup_epochs": 0, "lr0": 0.01}
    assert rec.stages[1].train == {"warmup_epochs": 1, "lr0": 0.01}


def test_bad_train_defaults_of_a_stage_type_are_a_plugin_error():
    types = {"t": StageType("t", options=Opts, accepts_training=True, train_defaults={"lr00": 1})}
    with pytest.raises(PluginError, match=r"stage type 't': train_defaults: unknown Ultralytics train argument"):
        parse_recipe({"stages": [{"type": "t", "teacher": "x"}]}, types)


def test_key_value_training_words_are_read_and_checked_like_ultralytics():
    assert parse_train_words(["lr0=1e-4", "cos_lr=true", "optimizer=SGD", "batch=8"], "prune") == {
        "lr0": 0.0001,
        "cos_lr": True,
        "optimizer": "SGD",
        "batch": 8,
    }
    with pytest.raises(
        RecipeError, match=r"^prune: unknown Ultralytics train argument 'lr00=' \(did you mean 'lr0'\?\)"
    ):
        parse_train_words(["lr00=0.1"], "prune")
    with pytest.raises(RecipeError, match=r"^prune: 'epochs=' is set by yoloslim; use the command's epochs flag"):
        parse_train_words(["epochs=3"], "prune")
    with pytest.raises(RecipeError, match=r"^prune: 'imgsz=' is set by yoloslim; use --imgsz"):
        parse_train_words(["imgsz=320"], "prune")
    with pytest.raises(
        RecipeError,
        match=r"^prune: 'lr0=': expected a number between 0.0 and 1.0, got str 'fast'; fix the value on the command",
    ):
        parse_train_words(["lr0=fast"], "prune")


def test_stage_command_help_shows_defaults_ranges_and_the_training_words():
    r = run_main("prune", "--help")
    assert r.returncode == 0
    out = " ".join(r.stdout.split())
    assert (
        "--max-layer-ratio MAX_LAYER_RATIO channel: no layer loses more than this fraction of its channels "
        "(default 0.75; (0, 1))" in out
    )
    assert "--finetune-epochs N fine-tuning epochs after pruning (per round with iterative_steps) (default 10)" in out
    assert "key=value" in out and "inherited from the checkpoint" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["lr00=1"], ["prune: unknown Ultralytics train argument 'lr00='", "did you mean 'lr0'"]),
        (["epochs=2"], ["prune: 'epochs=' is set by yoloslim", "epochs flag"]),
        (["--ratio", "1.5"], ["prune: key 'ratio': must be [0, 1), got 1.5"]),
    ],
)
def test_bad_stage_command_input_is_one_line_before_any_work(tiny_ckpt, tiny_data, tmp_path, args, words):
    r = run_main(
        "prune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "o.pt"),
        "--run-dir",
        str(tmp_path / "run"),
        *args,
    )
    assert_one_line_error(r, *words)
    assert not (tmp_path / "run").exists() and not (tmp_path / "o.pt").exists()


def test_a_stage_that_does_not_train_refuses_training_words(tiny_ckpt, tiny_data, tmp_path):
    r = run_main("export", str(tiny_ckpt), "--out", str(tmp_path / "o.onnx"), "lr0=0.1")
    assert r.returncode == 2 and "unrecognized arguments: lr0=0.1" in r.stderr


def test_plugins_verbose_lists_every_option_with_type_default_and_range():
    r = run_main("plugins", "--verbose")
    assert r.returncode == 0
    assert "max_layer_ratio (float, 0.75; (0, 1)): channel: no layer loses more than this fraction" in r.stdout
    assert "teacher (str, required): teacher checkpoint" in r.stdout
    assert (
        "epochs (3; CLI --qat-epochs): quantization-aware training epochs (mode qat only); trains with "
        "lr0=1e-05, warmup_epochs=0, amp=False unless set" in r.stdout
    )


def test_docs_stage_options_match_the_declarations():
    from yoloslim.options import markdown_reference
    from yoloslim.plugins import get_plugin_manager

    pm = get_plugin_manager()
    first_party = {info.name for info in pm.info() if info.package == "yoloslim"}  # not a plugin someone installed
    expected = markdown_reference({k: st for k, st in pm.stage_types().items() if st.plugin in first_party})
    assert (ROOT / "docs" / "stage-options.md").read_text(encoding="utf-8") == expected, (
        "docs/stage-options.md is stale: run 'yoloslim plugins --markdown > docs/stage-options.md'"
    )
