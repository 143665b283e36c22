"""`yoloslim bench` and the report: one table, a JSON file and an accuracy-vs-latency plot with its Pareto front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import DETECT_IMGSZ

from yoloslim.context import SlimContext
from yoloslim.measurement import Measurement
from yoloslim.report import pareto_front, plot_pareto
from yoloslim_test_support import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def row(name: str, ms: float | None, acc: float | None) -> Measurement:
    return Measurement(
        name=name,
        path=name,
        format="onnx",
        imgsz=96,
        params=1,
        gflops=1.0,
        size_mb=1.0,
        map50_95=acc,
        latency_p50_ms=ms,
    )


def test_pareto_front_keeps_rows_no_other_row_beats_on_both_axes():
    rows = [
        row("orig", 10.0, 0.60),
        row("int8", 4.0, 0.55),
        row("slow_bad", 12.0, 0.50),
        row("fp16", 6.0, 0.58),
        row("worse_int8", 5.0, 0.40),
        row("unmeasured", None, 0.9),
        row("tie_slower", 6.0, 0.58),
    ]
    assert [rows[i].name for i in pareto_front(rows)] == ["int8", "fp16", "orig"]


def test_plot_is_written_only_when_rows_have_accuracy_and_latency(tmp_path):
    assert plot_pareto([row("a", None, None)], tmp_path / "none.png") is None
    path = plot_pareto([row("a", 3.0, 0.5), row("b", 2.0, 0.4), row("c", 4.0, 0.3)], tmp_path / "p.png")
    assert path.read_bytes().startswith(PNG) and not (tmp_path / "none.png").exists()


@pytest.fixture(scope="module")
def onnx_file(detect_ckpt, tmp_path_factory) -> Path:
    return SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", tmp_path_factory.mktemp("bench") / "d.onnx")


def test_bench_cli_writes_table_json_and_pareto_plot(detect_ckpt, onnx_file, tiny_data, tmp_path):
    out = tmp_path / "bench"
    r = run_cli(
        "bench",
        str(detect_ckpt),
        str(onnx_file),
        "--data",
        str(tiny_data),
        "--imgsz",
        str(DETECT_IMGSZ),
        "--runs",
        "5",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    rows = report["measurements"]
    assert [m["name"] for m in rows] == ["detect.pt", "d.onnx"]
    for m in rows:
        for key in ("size_mb", "params", "gflops", "map50_95", "latency_p50_ms", "latency_p90_ms", "throughput_fps"):
            assert m[key] is not None and m[key] >= 0, key
    assert abs(rows[0]["map50_95"] - rows[1]["map50_95"]) <= 0.01
    assert report["pareto_front"] and set(report["pareto_front"]) <= {"detect.pt", "d.onnx"}
    md = (out / "bench.md").read_text()
    assert "| detect.pt | pt |" in md and "![mAP50-95 vs latency](pareto.png)" in md
    assert (out / "pareto.png").read_bytes().startswith(PNG)
    assert "| d.onnx | onnx |" in r.stdout


def test_compress_report_embeds_the_same_table_and_plot(detect_ckpt, tiny_data, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: exp\nstages:\n  - type: export\n    format: onnx\n")
    run = tmp_path / "run"
    r = run_cli(
        "compress",
        str(detect_ckpt),
        "--data",
        str(tiny_data),
        "--recipe",
        str(recipe),
        "--out",
        str(run),
        "--imgsz",
        str(DETECT_IMGSZ),
        "--runs",
        "3",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    md = (run / "report.md").read_text()
    assert "| original | pt |" in md and "| export | onnx |" in md
    assert "![mAP50-95 vs latency](pareto.png)" in md and "Pareto front" in md
    assert (run / "pareto.png").read_bytes().startswith(PNG)
