"""End to end: `yoloslim compress` with an installed third-party plugin, and CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from yoloslim_test_support import run_cli, subprocess_env

RECIPE = """\
name: e2e
train: {amp: false}
stages:
  - type: l2shrink
    factor: 1.0
    epochs: 1
  - type: export
    format: onnx
"""


@pytest.fixture(scope="module")
def compressed(tiny_data, tiny_ckpt, plugin_site, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(RECIPE)
    log = tmp / "events.log"
    env = subprocess_env(PYTHONPATH=str(plugin_site), TESTPLUG_LOG=str(log), TESTPLUG_WEIGHT="0.01")
    r = run_cli(
        "compress",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--recipe",
        str(recipe),
        "--out",
        str(tmp / "run"),
        "--imgsz",
        "64",
        "--runs",
        "5",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return tmp / "run", log.read_text().splitlines(), r


def test_third_party_plugin_hooks_fire_in_order_in_a_real_training_run(compressed):
    _, events, _ = compressed
    names = [e.split()[0] for e in events]
    assert names[0] == "transform"
    assert names[1] == "train_start"
    first_batch = names.index("batch_start")
    assert names[first_batch + 1] == "extra_loss"
    assert "after_optimizer_step" in names
    assert names.index("after_optimizer_step") > first_batch
    epoch_end = names.index("epoch_end")
    assert "batch_start" not in names[epoch_end:]
    assert names.index("model_to_save") > epoch_end
    assert names[-1] == "train_end"
    assert {e.split()[1] for e in events} == {"l2shrink"}


def test_extra_loss_term_is_logged_by_name_in_results_csv(compressed):
    run, _, r = compressed
    csv = (run / "01_l2shrink" / "train" / "results.csv").read_text().splitlines()
    header = [h.strip() for h in csv[0].split(",")]
    assert "train/testplug_l2" in header and "val/testplug_l2" not in header
    value = float(csv[1].split(",")[header.index("train/testplug_l2")])
    assert value > 0


def test_finetune_inherits_the_checkpoints_own_training_arguments(compressed):
    import yaml

    run, _, _ = compressed
    args = yaml.safe_load((run / "01_l2shrink" / "train" / "args.yaml").read_text())
    assert args["batch"] == 8  # tiny_ckpt was trained with batch 8; Ultralytics' default is 16
    assert args["amp"] is False  # the recipe's own train arguments still apply


def test_report_compares_original_stage_checkpoint_and_onnx(compressed):
    run, _, r = compressed
    report = json.loads((run / "report.json").read_text())
    rows = report["measurements"]
    # The original exported to FP32 ONNX sits beside the ONNX artifact: its speed-up is like for like.
    assert [m["name"] for m in rows] == ["original", "original (onnx fp32)", "l2shrink", "export"]
    assert [m["format"] for m in rows] == ["pt", "onnx", "pt", "onnx"]
    assert all(m["extra"]["testplug_seen"] == m["name"] for m in rows)
    # Every row knows the stage that made its file and the file it was built from.
    original = str(Path(rows[0]["path"]).resolve())
    assert [(m["stage"], m["source"]) for m in rows] == [
        (None, None),
        (None, original),
        ("l2shrink", original),
        ("export", str(Path(rows[2]["path"]).resolve())),
    ]
    base, ft, onnx = rows[1], rows[2], rows[3]
    assert base["path"].endswith("00_original/original.onnx") and abs(base["map50_95"] - rows[0]["map50_95"]) <= 0.01
    assert abs(ft["map50_95"] - onnx["map50_95"]) <= 0.01
    assert ft["params"] == pytest.approx(onnx["params"], rel=0.01)
    assert all(m["latency_p50_ms"] > 0 for m in rows)
    md = (run / "report.md").read_text()
    assert "| l2shrink |" in md and "testplug_seen" in md
    assert "| export | original (onnx fp32) |" in md and "| l2shrink | original |" in md
    assert not list(run.rglob("*.tmp"))


def test_stage_checkpoint_loads_with_plain_yolo_in_a_fresh_process(compressed):
    run, _, _ = compressed
    code = "import sys; from ultralytics import YOLO; m = YOLO(sys.argv[1]); print(m.task, len(m.names))"
    r = subprocess.run(
        [sys.executable, "-c", code, str(run / "01_l2shrink" / "l2shrink.pt")],
        capture_output=True,
        text=True,
        env=subprocess_env(YOLOSLIM_PLUGINS="none"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2] == "detect"


@pytest.mark.parametrize("cmd", ["compress", "measure", "export", "plugins"])
def test_every_subcommand_has_help(cmd):
    r = run_cli(cmd, "--help")
    assert r.returncode == 0 and "usage: yoloslim " + cmd in r.stdout


def error_line(r):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yoloslim: error: "), r.stderr[-2000:]
    return lines[0]


def test_cli_errors_are_one_line_and_non_zero(tmp_path, tiny_data, tiny_ckpt):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: finetune, epochs: 1}\n")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 100)
    missing = tmp_path / "missing.pt"

    line = error_line(run_cli("compress", str(missing), "--data", str(tiny_data), "--recipe", str(recipe)))
    assert str(missing) in line
    line = error_line(run_cli("measure", str(corrupt), "--data", str(tiny_data)))
    assert str(corrupt) in line
    line = error_line(
        run_cli("compress", str(tiny_ckpt), "--data", str(tmp_path / "nodata.yaml"), "--recipe", str(recipe))
    )
    assert "nodata.yaml" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {type: finetune, epoch: 1}\n")
    line = error_line(
        run_cli(
            "compress", str(tiny_ckpt), "--data", str(tiny_data), "--recipe", str(bad), "--out", str(tmp_path / "run")
        )
    )
    assert "unknown key 'epoch'" in line and str(bad) in line
    assert not (tmp_path / "run").exists()  # validation happens before any work
    line = error_line(run_cli("export", str(tiny_ckpt), "--format", "tflite2", "--out", str(tmp_path / "m.x")))
    assert "format 'tflite2'" in line
    assert not (tmp_path / "m.x").exists()


def test_dataset_with_other_classes_than_the_model_is_rejected_before_work(tmp_path, tiny_data, tiny_ckpt):
    import yaml

    other = yaml.safe_load(Path(tiny_data).read_text())
    other["names"] = {i: f"thing{i}" for i in other["names"]}
    other_yaml = tmp_path / "other.yaml"
    other_yaml.write_text(yaml.safe_dump(other))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - {type: finetune, epochs: 1}\n")
    line = error_line(
        run_cli(
            "compress",
            str(tiny_ckpt),
            "--data",
            str(other_yaml),
            "--recipe",
            str(recipe),
            "--out",
            str(tmp_path / "run"),
        )
    )
    assert "thing0" in line and "other.yaml" in line
    assert not (tmp_path / "run").exists()


def test_plugin_stage_type_becomes_a_subcommand_with_flags_from_its_options(
    tmp_path, tiny_data, tiny_ckpt, plugin_site
):
    env = subprocess_env(PYTHONPATH=str(plugin_site), YOLOSLIM_DISABLE_PLUGINS="brokenplug")
    r = run_cli("l2shrink", "--help", env=env)
    assert r.returncode == 0 and "--factor FACTOR" in r.stdout and "--epochs N" in r.stdout
    r = run_cli(
        "l2shrink", str(tiny_ckpt), "--data", str(tiny_data), "--factor", "x", "--out", str(tmp_path / "o.pt"), env=env
    )
    assert r.returncode == 2 and "argument --factor: invalid float value: 'x'" in r.stderr
    assert not (tmp_path / "o.pt").exists()
    out = tmp_path / "shrunk.pt"
    r = run_cli(
        "l2shrink",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--factor",
        "0.5",
        "--epochs",
        "0",
        "--out",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--runs",
        "3",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    from yoloslim.checkpoint import load_checkpoint

    a, _ = load_checkpoint(tiny_ckpt)
    b, _ = load_checkpoint(out)
    wa, wb = next(a.parameters()), next(b.parameters())
    assert float((wb - 0.5 * wa).abs().max()) < 1e-2  # the stage's option reached the plugin (fp16 storage)
    assert (tmp_path / "run" / "report.md").exists()
