"""Tests of the ``slim`` stage, written as a plugin repository writes them: the fixtures (``tiny_ckpt``,
``tiny_data``, ``yoloslim_cli``) come from the pytest plugin that installing yoloslim registers; no conftest.py.

yoloslim finds plugins by their entry point, so install the example first (``pip install -e examples/yoloslim-slim``)
and run ``pytest examples/yoloslim-slim/tests``.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from yoloslim_slim import STAGE_TYPE, bn_channels

import yoloslim
from yoloslim.testing import assert_one_line_error


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if "slim" not in {ep.name for ep in entry_points(group="yoloslim")}:
        pytest.fail("yoloslim-slim is not installed, so yoloslim cannot find it: pip install -e examples/yoloslim-slim")


@pytest.fixture(scope="module")
def slim_run(yoloslim_cli, tiny_ckpt: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``yoloslim slim`` run (1 epoch at 64 px), shared by the tests below; returns its folder."""
    tmp = tmp_path_factory.mktemp("slim")
    result = yoloslim_cli(
        "slim",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(tmp / "out.pt"),
        "--epochs",
        "1",
        "--ratio",
        "0.3",
        "--runs",
        "1",
        "--run-dir",
        str(tmp / "run"),
        "batch=8",
        "amp=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


def test_output_has_fewer_bn_channels_and_loads(slim_run: Path, tiny_ckpt: Path) -> None:
    original, _ = yoloslim.load_checkpoint(tiny_ckpt)
    slimmed, ckpt = yoloslim.load_checkpoint(slim_run / "out.pt")
    assert bn_channels(slimmed) < bn_channels(original)
    assert ckpt["yoloslim"]["stage"]["options"] == {"ratio": 0.3, "sparsity": 1e-4}


def test_training_files_keep_the_unslimmed_model(slim_run: Path, tiny_ckpt: Path) -> None:
    train = slim_run / "run" / "01_slim" / "train"
    last, _ = yoloslim.load_checkpoint(train / "weights" / "last.pt")
    assert bn_channels(last) == bn_channels(yoloslim.load_checkpoint(tiny_ckpt)[0])
    assert "train/bn_l1" in (train / "results.csv").read_text().splitlines()[0]


def test_report_has_the_column_on_the_slim_row_only(slim_run: Path) -> None:
    rows = {m["name"]: m["extra"] for m in json.loads((slim_run / "run" / "report.json").read_text())["measurements"]}
    kept, total = map(int, rows["slim"]["BN channels"].split("/"))
    assert 0 < kept < total
    assert "BN channels" not in rows["original"]


def test_bad_ratio_is_one_line_error(yoloslim_cli, tiny_ckpt: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = yoloslim_cli(
        "slim", str(tiny_ckpt), "--data", str(tiny_data), "--out", str(tmp_path / "o.pt"), "--ratio", "1.5"
    )
    assert_one_line_error(result, "ratio", "1.5")
    assert not (tmp_path / "o.pt").exists()


def test_sparsity_needs_epochs() -> None:
    with pytest.raises(yoloslim.RecipeError, match="sparsity"):
        STAGE_TYPE.parse({"sparsity": 1e-4}, epochs=0)
    assert STAGE_TYPE.parse({"sparsity": 0}, epochs=0).ratio == 0.3
