"""Recipe validation: every bad recipe is rejected before work starts, naming file, stage and key."""

from pathlib import Path

import pytest

from yoloslim.errors import RecipeError
from yoloslim.recipe import REQUIRED, Option, StageType, load_recipe, parse_recipe

TYPES = {
    "prune": StageType("prune", trains=True, default_epochs=3, options={
        "ratio": Option(float, 0.5), "method": Option(str, "l2", choices=("l1", "l2")),
        "target": Option(str, REQUIRED)}),
    "export": StageType("export", produces="artifact", options={"format": Option(str, "onnx")}),
}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_valid_recipe_fills_defaults_and_merges_train_args(tmp_path):
    p = write(tmp_path, "train: {batch: 8}\nstages:\n  - {type: prune, target: macs, ratio: 1, train: {lr0: 0.01}}\n"
                        "  - {type: export}\n")
    r = load_recipe(p, TYPES)
    assert r.name == "r"
    prune, export = r.stages
    assert prune.options == {"ratio": 1.0, "method": "l2", "target": "macs"}
    assert isinstance(prune.options["ratio"], float)
    assert prune.epochs == 3 and prune.train == {"batch": 8, "lr0": 0.01}
    assert export.produces == "artifact" and export.epochs == 0 and export.options == {"format": "onnx"}


@pytest.mark.parametrize("text, needles", [
    ("stages:\n  - {type: distill}\n", ["stage 1 (distill)", "unknown stage type 'distill'", "prune"]),
    ("stages:\n  - {type: prune, target: x, ratoi: 0.5}\n", ["stage 1 (prune)", "unknown key 'ratoi'"]),
    ("stages:\n  - {type: prune, target: x, ratio: half}\n", ["stage 1 (prune)", "key 'ratio'", "expected float"]),
    ("stages:\n  - {type: prune, target: x, method: l3}\n", ["key 'method'", "one of ['l1', 'l2']"]),
    ("stages:\n  - {type: prune}\n", ["missing required key 'target'"]),
    ("stages:\n  - {type: prune, target: x, epochs: -1}\n", ["key 'epochs'"]),
    ("stages:\n  - {type: export, epochs: 3}\n", ["stage 1 (export)", "unknown key 'epochs'"]),
    ("stages:\n  - {type: prune, target: x, train: {lr00: 1}}\n", ["stage 1 (prune)", "train.lr00"]),
    ("stages:\n  - {type: prune, target: x, train: {epochs: 1}}\n", ["train.epochs", "'epochs' key"]),
    ("stages:\n  - {type: prune, target: x, train: {imgsz: 320}}\n", ["train.imgsz", "top-level"]),
    ("stage:\n  - {type: prune}\n", ["unknown top-level key 'stage'"]),
    ("stages: []\n", ["non-empty list"]),
    ("stages: [prune]\n", ["stage 1", "'type' key"]),
    ("stages:\n  - {type: prune, target: x\n", ["not valid YAML"]),
])
def test_bad_recipe_error_names_file_stage_and_key(tmp_path, text, needles):
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as e:
        load_recipe(p, TYPES)
    msg = str(e.value)
    assert str(p) in msg
    for needle in needles:
        assert needle in msg
    assert "\n" not in msg


def test_unknown_stage_mentions_plugins_that_failed_to_load(tmp_path):
    p = write(tmp_path, "stages:\n  - {type: distill}\n")
    with pytest.raises(RecipeError, match=r"yoloslim_distill \(ImportError: no torch\)"):
        load_recipe(p, TYPES, failed_plugins={"yoloslim_distill": "ImportError: no torch"})


def test_missing_recipe_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml", TYPES)


def test_bundled_recipes_validate_against_installed_plugins():
    from yoloslim.plugins import PluginManager

    pm = PluginManager()
    for p in Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml"):
        assert load_recipe(p, pm.stage_types(), pm.failed).stages


def test_stage_check_rejects_conflicting_options_before_any_work(tmp_path):
    def check(options, epochs):
        if options["ratio"] and options["method"] == "none":
            raise ValueError("'ratio' needs a 'method'; set method or drop ratio")

    types = {"prune": StageType("prune", options={"ratio": Option(float, 0.0), "method": Option(str, "none")},
                                check=check)}
    ok = parse_recipe({"stages": [{"type": "prune", "ratio": 0.5, "method": "l1"}]}, types)
    assert ok.stages[0].options == {"ratio": 0.5, "method": "l1"}
    with pytest.raises(RecipeError, match=r"stage 1 .*'ratio' needs a 'method'"):
        parse_recipe({"stages": [{"type": "prune", "ratio": 0.5}]}, types)
