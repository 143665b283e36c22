"""A stage's default training continues where the checkpoint's own schedule ended, instead of Ultralytics' defaults."""

from __future__ import annotations

import pytest
import yaml

from yoloslim import SlimContext
from yoloslim.pipeline import resumed_schedule, run_stage
from yoloslim.plugins import get_plugin_manager
from yoloslim.recipe import parse_recipe


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"optimizer": "AdamW", "lr0": 1e-4, "lrf": 0.01}, {"warmup_epochs": 0.0, "lr0": 1e-6}),
        # optimizer='auto' ignores lr0: what Ultralytics picked is resolved (SGD at 0.01 for COCO's 118287 images)
        (
            {
                "optimizer": "auto",
                "lr0": 0.01,
                "lrf": 0.01,
                "epochs": 600,
                "batch": 128,
                "nbs": 64,
                "data": "coco.yaml",
            },
            {"warmup_epochs": 0.0, "optimizer": "SGD", "momentum": 0.9, "lr0": 1e-4},
        ),
        (  # a short run on 200 images: AdamW at 0.002 * 5 / (4 + 80)
            {"optimizer": "auto", "lr0": 0.01, "lrf": 0.01, "epochs": 10, "batch": 16, "nbs": 64, "data": "mine.yaml"},
            {"warmup_epochs": 0.0, "optimizer": "AdamW", "momentum": 0.9, "lr0": 0.000119 * 0.01},
        ),
        ({}, {"warmup_epochs": 0.0}),  # nothing recorded: only no warm-up
    ],
)
def test_the_resumed_schedule_starts_at_the_checkpoints_final_learning_rate(args, expected):
    got = resumed_schedule(args, n_train=200, nc=80)
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v) for k, v in expected.items())


def _finetune(tmp_path, tiny_data, ckpt, name: str, train: dict) -> tuple[dict, dict]:
    pm = get_plugin_manager()
    stage = parse_recipe({"stages": [{"type": "finetune", "epochs": 1, "train": train}]}, pm.stage_types()).stages[0]
    ctx = SlimContext(
        run_dir=tmp_path, data=str(tiny_data), imgsz=64, stage=stage, stage_dir=tmp_path / name, plugins=pm
    )
    run_stage(stage, ckpt, ctx)
    run = tmp_path / name / "train"
    args = yaml.safe_load((run / "args.yaml").read_text())
    header, row = (line.split(",") for line in (run / "results.csv").read_text().splitlines()[:2])
    values = {h.strip(): float(v) for h, v in zip(header, row)}
    return args, values


def test_default_fine_tuning_keeps_a_tiny_models_val_loss_from_exploding(tmp_path, tiny_data, tiny_ckpt):
    from yoloslim import load_checkpoint

    _, ckpt = load_checkpoint(tiny_ckpt)
    own = ckpt["train_args"]
    common = {"batch": 8, "amp": False, "workers": 0, "seed": 0}
    args, default = _finetune(tmp_path, tiny_data, tiny_ckpt, "default", common)
    assert args["warmup_epochs"] == 0.0
    expected = resumed_schedule(own, 32, 8)
    assert args["lr0"] == pytest.approx(expected["lr0"]) and args["lr0"] == pytest.approx(own["lr0"] * own["lrf"])
    assert args["optimizer"] == expected.get("optimizer", own["optimizer"])

    _, still = _finetune(tmp_path, tiny_data, tiny_ckpt, "still", {**common, "lr0": 1e-12, "optimizer": "SGD"})
    _, hot = _finetune(tmp_path, tiny_data, tiny_ckpt, "hot", {**common, "lr0": 0.01, "warmup_epochs": 3.0})

    def val_loss(values: dict) -> float:
        return sum(values[f"val/{k}_loss"] for k in ("box", "cls", "dfl"))

    # The default moves the model no further than a learning rate of ~0 does; Ultralytics' own defaults move it away.
    assert val_loss(default) <= 1.05 * val_loss(still)
    assert val_loss(hot) > val_loss(default)


def test_a_restart_starts_at_the_checkpoints_own_learning_rate():
    args = {"optimizer": "AdamW", "lr0": 1e-4, "lrf": 0.01}
    assert resumed_schedule(args, n_train=200, nc=80, restart=True) == {"warmup_epochs": 0.0, "lr0": 1e-4}
    auto = {"optimizer": "auto", "lr0": 0.01, "lrf": 0.01, "epochs": 600, "batch": 128, "data": "coco.yaml"}
    got = resumed_schedule(auto, n_train=200, nc=80, restart=True)
    assert got == {"warmup_epochs": 0.0, "optimizer": "SGD", "momentum": 0.9, "lr0": 0.01}


def test_a_prune_stage_fine_tunes_from_the_restarted_schedule_unless_told_otherwise(tmp_path, tiny_data, tiny_ckpt):
    from yoloslim import load_checkpoint

    _, ckpt = load_checkpoint(tiny_ckpt)
    own = ckpt["train_args"]
    pm = get_plugin_manager()
    assert pm.stage_types()["prune"].schedule == "restart" and pm.stage_types()["finetune"].schedule == "resume"

    def pruned_args(name: str, train: dict) -> dict:
        raw = {"type": "prune", "method": "channel", "ratio": 0.2, "importance": "l2", "epochs": 1, "train": train}
        stage = parse_recipe({"stages": [raw]}, pm.stage_types()).stages[0]
        assert stage.schedule == "restart" and stage.to_dict()["schedule"] == "restart"
        ctx = SlimContext(
            run_dir=tmp_path, data=str(tiny_data), imgsz=64, stage=stage, stage_dir=tmp_path / name, plugins=pm
        )
        run_stage(stage, tiny_ckpt, ctx)
        (run,) = (tmp_path / name).rglob("args.yaml")
        return yaml.safe_load(run.read_text())

    common = {"batch": 8, "amp": False, "workers": 0, "plots": False}
    args = pruned_args("restart", common)
    assert args["warmup_epochs"] == 0.0
    assert args["lr0"] == pytest.approx(resumed_schedule(own, 32, 8, restart=True)["lr0"])
    assert args["lr0"] == pytest.approx(own["lr0"]) != pytest.approx(own["lr0"] * own["lrf"])
    assert pruned_args("given", {**common, "lr0": 3e-4})["lr0"] == pytest.approx(3e-4)  # the recipe's wins


def test_a_model_pruned_without_training_restarts_the_schedule_of_the_stage_that_trains_it_next(
    tmp_path, tiny_data, tiny_ckpt
):
    from yoloslim import load_checkpoint
    from yoloslim.pipeline import RELEARN

    _, ckpt = load_checkpoint(tiny_ckpt)
    own = ckpt["train_args"]
    pm = get_plugin_manager()
    train = {"batch": 8, "amp": False, "workers": 0, "plots": False}
    raw = [
        {"type": "prune", "method": "channel", "ratio": 0.2, "importance": "l2", "epochs": 0},
        {"type": "finetune", "epochs": 1, "train": train},
        {"type": "finetune", "name": "again", "epochs": 1, "train": train},
    ]
    stages = parse_recipe({"stages": raw}, pm.stage_types()).stages
    current, lrs = tiny_ckpt, []
    for stage in stages:
        ctx = SlimContext(
            run_dir=tmp_path, data=str(tiny_data), imgsz=64, stage=stage, stage_dir=tmp_path / stage.name, plugins=pm
        )
        current = run_stage(stage, current, ctx)
        flag = (load_checkpoint(current)[1].get("yoloslim") or {}).get(RELEARN)
        assert flag is (True if stage.type == "prune" else None)  # recorded until a stage has trained the model
        for run in (tmp_path / stage.name).rglob("args.yaml"):
            lrs.append(yaml.safe_load(run.read_text())["lr0"])
    # the first training after the pruning restarts (the checkpoint's own lr0), the next one resumes (x lrf)
    assert lrs == [pytest.approx(own["lr0"]), pytest.approx(own["lr0"] * own["lrf"])]
