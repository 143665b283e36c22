"""``yoloslim profile``: per-block times from ONNX Runtime's profiler that add up, MACs beside them, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yoloslim.measurement import model_input
from yoloslim.measurement.profile import module_of, profile_onnx
from yoloslim.testing import assert_one_line_error

# Kernels must cover at least this share of a pass's wall time (the rest is ONNX Runtime's executor between kernels;
# measured 95-97% for YOLOv8n/YOLO11n at 640 px with 2 threads; a 128 px model on a loaded CI machine, less).
COVERAGE = 0.6


@pytest.fixture(scope="module")
def tiny_onnx(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yoloslim.context import SlimContext

    out = tmp_path_factory.mktemp("profile") / "tiny.onnx"
    return SlimContext(imgsz=128).export(tiny_ckpt, "onnx", out, imgsz=128, parity=False)


def test_block_times_add_up_to_the_measured_pass(tiny_onnx: Path):
    p = profile_onnx(tiny_onnx, model_input(128), threads=1, runs=10)
    blocks = p.blocks()
    assert sum(r["ms"] for r in blocks) == pytest.approx(p.kernel_ms, rel=1e-3)
    assert sum(r["share"] for r in blocks) == pytest.approx(1.0, abs=0.01)
    assert COVERAGE <= p.coverage <= 1.0 + 1e-6, (p.kernel_ms, p.total_ms)
    names = [r["block"] for r in blocks]
    assert names[0] == "model.0" and "model.22" in names and "model.22 decode" in names
    # MACs per block add up to the file's count, and the decode has time but (almost) no MACs.
    from yoloslim.measurement import onnx_counts

    assert 2 * sum(r["macs"] for r in blocks) / 1e9 == pytest.approx(onnx_counts(tiny_onnx, 128)[1], rel=1e-6)
    decode = next(r for r in blocks if r["block"] == "model.22 decode")
    assert decode["ms"] > 0 and decode["macs"] < 0.01 * sum(r["macs"] for r in blocks)


def test_module_of_maps_exported_node_names_to_torch_modules():
    assert module_of("/model.3/conv/Conv_output_0_nchwc") == "model.3.conv"
    assert module_of("/model.23/cv2.0/cv2.0.0/conv/Conv") == "model.23.cv2.0.0.conv"
    assert module_of("/model.23/cv3.0/cv3.0.0/cv3.0.0.1/conv/Conv") == "model.23.cv3.0.0.1.conv"
    assert module_of("/model.2/cv2/act/Mul/QuickGeluFusion/") == "model.2.cv2.act"
    assert module_of("/model.2/m.0/cv1/conv/Conv") == "model.2.m.0.cv1.conv"


def test_profile_command_writes_a_report_of_two_models(yoloslim_cli, tiny_ckpt: Path, tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "profile.md"
    r = yoloslim_cli(
        "profile", str(tiny_ckpt), str(tiny_onnx), "--imgsz", "128", "--runs", "3", "--threads", "1", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    md = out.read_text()
    assert "| block |" in md and "x ref" in md and "pass (wall)" in md
    js = json.loads(out.with_suffix(".json").read_text())
    assert len(js["models"]) == 2
    for model in js["models"].values():
        assert model["kernel_ms"] == pytest.approx(sum(b["ms"] for b in model["blocks"]), rel=1e-3)


def test_profile_bad_input_is_one_line(yoloslim_cli, tiny_ckpt: Path, tmp_path: Path):
    assert_one_line_error(yoloslim_cli("profile", str(tmp_path / "missing.pt")), "missing.pt", "no such file")
    assert_one_line_error(
        yoloslim_cli("profile", str(tiny_ckpt), "--format", "onnx-int8", "--imgsz", "128"), "onnx-int8", "--data"
    )
    assert_one_line_error(yoloslim_cli("profile", str(tiny_ckpt), "--imgsz", "100"), "imgsz")
    out = tmp_path / "p.md"
    assert_one_line_error(yoloslim_cli("profile", str(tiny_ckpt), "--out", str(tiny_ckpt)), "--out")
    assert not out.exists()
