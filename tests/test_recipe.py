"""Recipe validation: every bad recipe is rejected before work starts, naming file, stage and key."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from yoloslim import StageType, option, options_dict
from yoloslim.errors import RecipeError
from yoloslim.recipe import load_recipe, parse_recipe


@dataclass(frozen=True)
class PruneOpts:
    target: str = option(help="what to aim at")
    ratio: float = option(0.5)
    method: str = option("l2", choices=("l1", "l2"))


@dataclass(frozen=True)
class ExportOpts:
    format: str = option("onnx")


TYPES = {
    "prune": StageType("prune", options=PruneOpts, accepts_training=True, default_epochs=3),
    "export": StageType("export", options=ExportOpts, produces="artifact"),
}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_valid_recipe_fills_defaults_and_merges_train_args(tmp_path):
    p = write(
        tmp_path,
        "train: {batch: 8}\nstages:\n  - {type: prune, target: macs, ratio: 1, train: {lr0: 0.01}}\n"
        "  - {type: export}\n",
    )
    r = load_recipe(p, TYPES)
    assert r.name == "r"
    prune, export = r.stages
    assert prune.options == PruneOpts(target="macs", ratio=1.0, method="l2")
    assert isinstance(prune.options.ratio, float)
    assert prune.epochs == 3 and prune.train == {"batch": 8, "lr0": 0.01}
    assert export.produces == "artifact" and export.epochs == 0 and options_dict(export.options) == {"format": "onnx"}


@pytest.mark.parametrize(
    "text, needles",
    [
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
    ],
)
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
    @dataclass(frozen=True)
    class Opts:
        ratio: float = option(0.0)
        method: str = option("none")

        def check(self, epochs):
            if self.ratio and self.method == "none":
                raise ValueError("'ratio' needs a 'method'; set method or drop ratio")

    types = {"prune": StageType("prune", options=Opts)}
    ok = parse_recipe({"stages": [{"type": "prune", "ratio": 0.5, "method": "l1"}]}, types)
    assert options_dict(ok.stages[0].options) == {"ratio": 0.5, "method": "l1"}
    with pytest.raises(RecipeError, match=r"stage 1 .*'ratio' needs a 'method'"):
        parse_recipe({"stages": [{"type": "prune", "ratio": 0.5}]}, types)


@pytest.mark.parametrize("bad", ["../x", "a/b", "a b", "..", "", "x" * 65, "ünï", 3])
def test_stage_name_that_is_not_a_plain_name_is_refused_naming_the_stage(bad):
    with pytest.raises(RecipeError) as e:
        parse_recipe({"stages": [{"type": "export"}, {"type": "prune", "target": "x", "name": bad}]}, TYPES)
    msg = str(e.value)
    assert msg.startswith("<recipe>: stage 2 (prune): key 'name' must be a plain name of 1-64 letters, digits")
    assert "\n" not in msg


def test_plain_stage_and_recipe_names_are_kept():
    r = parse_recipe(
        {"name": "prune-v2_fast", "stages": [{"type": "prune", "target": "x", "name": "Prune_1-a"}]}, TYPES
    )
    assert r.name == "prune-v2_fast" and r.stages[0].name == "Prune_1-a"


@pytest.mark.parametrize("bad", ["../evil", "/tmp/x", "a b", ""])
def test_recipe_name_that_is_not_a_plain_name_is_refused(tmp_path, bad):
    p = write(tmp_path, f"name: {bad!r}\nstages:\n  - {{type: export}}\n")
    with pytest.raises(RecipeError, match=r"'name' must be a plain name .*runs/slim/<name>") as e:
        load_recipe(p, TYPES)
    assert str(e.value).startswith(f"{p}: ")


def test_recipe_file_stem_that_is_not_a_plain_name_becomes_one(tmp_path):
    p = tmp_path / "my recipe.v2.yaml"
    p.write_text("stages:\n  - {type: export}\n")
    assert load_recipe(p, TYPES).name == "my_recipe_v2"


def test_two_stages_with_one_name_are_refused():
    twice = {"stages": [{"type": "prune", "target": "x"}, {"type": "prune", "target": "y"}]}
    with pytest.raises(RecipeError, match=r"stage 2 \(prune\): stage name 'prune' is already used by stage 1"):
        parse_recipe(twice, TYPES)
    twice["stages"][1]["name"] = "prune2"
    assert [s.name for s in parse_recipe(twice, TYPES).stages] == ["prune", "prune2"]
    with pytest.raises(RecipeError, match=r"stage name 'original' is the report's row of the input model"):
        parse_recipe({"stages": [{"type": "export", "name": "original"}]}, TYPES)


def test_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    rows += [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
    p = write(tmp_path, "\n".join(rows) + "\nstages: [*i]\n")
    assert p.stat().st_size < 500
    with pytest.raises(RecipeError) as e:
        load_recipe(p, TYPES)
    assert str(e.value) == (f"{p}: uses YAML aliases (&/*), which yoloslim does not accept; write the values out")


def test_safe_yaml_load_refuses_aliases_and_python_tags_but_reads_plain_yaml():
    from yoloslim.errors import DataError
    from yoloslim.recipe import safe_yaml_load

    assert safe_yaml_load("a: [1, 2]\nb: {c: x}\n", "t.yaml") == {"a": [1, 2], "b": {"c": "x"}}
    with pytest.raises(DataError, match=r"^data.yaml: uses YAML aliases"):
        safe_yaml_load("a: &x 1\nb: *x\n", "data.yaml", error=DataError)
    with pytest.raises(RecipeError, match=r"not valid YAML \(line 1: could not determine a constructor"):
        safe_yaml_load("a: !!python/object/apply:os.system [echo hi]\n", "t.yaml")
    with pytest.raises(RecipeError, match="nested too deeply"):
        safe_yaml_load("[" * 20000, "t.yaml")


def test_binary_recipe_file_is_a_recipe_error(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"\xff\xfe\x00\x81stages" * 10)
    with pytest.raises(RecipeError, match="not a text file"):
        load_recipe(p, TYPES)


@pytest.mark.parametrize(
    "raw",
    [
        {"stages": [{"type": "prune", "target": "x", "ratio": "x" * 100_000}]},
        {"stages": [["y" * 10_000] * 10_000]},
        {"stages": [{"type": "prune", "target": "x", "k" * 100_000: 1}]},
        {"stages": [{"type": "z" * 100_000}]},
        {"stages": [{"type": ["z"] * 100_000}]},
        {"train": {"amp": "w" * 100_000}, "stages": [{"type": "export"}]},
        {"train": "v" * 100_000, "stages": [{"type": "export"}]},
        {"name": "n" * 100_000, "stages": [{"type": "export"}]},
    ],
)
def test_error_messages_cut_long_user_values(raw):
    with pytest.raises(RecipeError) as e:
        parse_recipe(raw, TYPES)
    msg = str(e.value)
    assert len(msg) < 600 and "\n" not in msg and "..." in msg


@pytest.mark.parametrize(
    "train, words",
    [
        ({"lr0": "fast"}, ["'train.lr0'", "expected a number between 0.0 and 1.0", "got str 'fast'", "fix the value"]),
        ({"momentum": 1.5}, ["'train.momentum'", "between 0.0 and 1.0", "got float 1.5"]),
        ({"batch": "big"}, ["'train.batch'", "expected a number", "got str 'big'"]),
        ({"patience": 2.5}, ["'train.patience'", "expected an int", "got float 2.5"]),
        ({"cos_lr": "yes"}, ["'train.cos_lr'", "expected true or false", "got str 'yes'"]),
        ({"optimizer": 3}, ["'train.optimizer'", "expected a string", "got int 3"]),
        ({"lr0": None}, ["'train.lr0'", "got NoneType None"]),
        ({"amp": "fp64"}, ["'train.amp'", "which Ultralytics refuses", "'fp16'"]),
    ],
)
def test_train_argument_values_are_checked_with_ultralytics_rules(train, words):
    for raw, where in (
        ({"train": train, "stages": [{"type": "export"}]}, "<recipe>: 'train."),
        ({"stages": [{"type": "prune", "target": "x", "train": train}]}, "<recipe>: stage 1 (prune): "),
    ):
        with pytest.raises(RecipeError) as e:
            parse_recipe(raw, TYPES)
        msg = str(e.value)
        assert msg.startswith(where), msg
        for word in words:
            assert word in msg, (word, msg)


def test_valid_train_argument_values_are_converted_as_ultralytics_does():
    r = parse_recipe(
        {
            "train": {"fraction": 1, "lr0": 1, "cos_lr": True, "optimizer": "SGD", "amp": "FP16"},
            "stages": [{"type": "export"}],
        },
        TYPES,
    )
    assert r.train == {"fraction": 1.0, "lr0": 1, "cos_lr": True, "optimizer": "SGD", "amp": "fp16"}


def test_stage_type_that_is_not_a_string_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"stage 1: key 'type': expected the name of a stage type, got list"):
        parse_recipe({"stages": [{"type": ["prune"]}]}, TYPES)


def test_bug_in_a_stage_check_becomes_one_line_plugin_error():
    from yoloslim.errors import ModelError, PluginError

    def options_raising(error):
        @dataclass(frozen=True)
        class XOptions:
            def check(self, epochs):
                raise error

        return {"x": StageType("x", options=XOptions)}

    with pytest.raises(PluginError) as e:
        parse_recipe({"stages": [{"type": "x"}]}, options_raising(TypeError("unsupported operand type(s) for +")))
    assert str(e.value) == (
        "<recipe>: stage 1 (x): XOptions.check raised TypeError: unsupported operand type(s) "
        "for +; fix or disable the plugin that declares the stage type"
    )
    with pytest.raises(PluginError, match=r"XOptions.check raised SystemExit: 2"):
        parse_recipe({"stages": [{"type": "x"}]}, options_raising(SystemExit(2)))
    with pytest.raises(ModelError, match=r"^<recipe>: stage 1 \(x\): teacher 'big.pt' not found"):
        parse_recipe(
            {"stages": [{"type": "x"}]},
            options_raising(ModelError("teacher 'big.pt' not found; pass an existing checkpoint")),
        )
