"""Tests of the L2-SP example, with the fixtures installing yoloslim provides (``tiny_ckpt``, ``tiny_data``,
``yoloslim_cli``); no conftest.py.

yoloslim finds plugins by their entry point, so install the example first (``pip install -e examples/yoloslim-l2sp``)
and run ``pytest examples/yoloslim-l2sp/tests``.
"""

from __future__ import annotations

from pathlib import Path

import yoloslim


def test_plugin_is_discovered(yoloslim_cli) -> None:
    result = yoloslim_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert "l2sp  (yoloslim-l2sp 0.1.0)" in result.stdout, result.stdout


def test_loss_term_is_trained_and_logged(yoloslim_cli, tiny_ckpt: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = yoloslim_cli(
        "finetune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "ft.pt"),
        "--epochs",
        "1",
        "--runs",
        "1",
        "--run-dir",
        str(tmp_path / "run"),
        "batch=8",
        "amp=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = (tmp_path / "run" / "01_finetune" / "train" / "results.csv").read_text().splitlines()[0]
    assert "train/l2sp" in header
    yoloslim.load_checkpoint(tmp_path / "ft.pt")
