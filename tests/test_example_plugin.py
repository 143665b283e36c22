"""The README's 20-line plugin (examples/yoloslim-l2sp) installs, is discovered and trains."""

import shutil
import subprocess
import sys

from yoloslim_test_support import ROOT, subprocess_env


def test_readme_example_plugin_is_the_shipped_example():
    readme = (ROOT / "README.md").read_text()
    source = (ROOT / "examples" / "yoloslim-l2sp" / "yoloslim_l2sp" / "__init__.py").read_text()
    assert source.strip() in readme


def test_example_plugin_installs_and_adds_its_loss_term_in_training(tmp_path, tiny_data, tiny_ckpt):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "examples" / "yoloslim-l2sp", src)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train: {batch: 8, amp: false}\nstages:\n  - {type: finetune, epochs: 1}\n")
    code = ("import sys, yoloslim; from yoloslim.pipeline import run_stage; "
            "from yoloslim.plugins import get_plugin_manager; "
            "print(sorted(i.name for i in get_plugin_manager().info()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=subprocess_env(PYTHONPATH=str(site)))
    assert "'l2sp'" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "yoloslim.cli", "compress", str(tiny_ckpt), "--data", str(tiny_data),
                        "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--runs", "3"],
                       capture_output=True, text=True, env=subprocess_env(PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr[-3000:]
    header = (tmp_path / "run" / "01_finetune" / "train" / "results.csv").read_text().splitlines()[0]
    assert "train/l2sp" in header
