"""Tests of yoloslim.measurement: one measurement path that gives a .pt and its ONNX export the same numbers."""

from __future__ import annotations

import inspect
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from yoloslim.checkpoint import load_checkpoint
from yoloslim.errors import DataError, ModelError
from yoloslim.measurement import (
    Measurement,
    check_imgsz,
    check_runs,
    check_threads,
    format_table,
    measure,
    model_input,
    onnx_counts,
    torch_counts,
    validate,
    write_json,
)
from yoloslim_test_support import subprocess_env

IMGSZ = 64
COLOURS = ((0, 0, 255), (255, 0, 0))  # BGR: class 0 red, class 1 blue


def make_shapes_dataset(root: Path, n: int = 32, size: int = IMGSZ, seed: int = 0) -> Path:
    """Write a YOLO dataset of coloured rectangles on black (train and val hold the same images)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.zeros((size, size, 3), np.uint8)
        lines = []
        for _ in range(int(rng.integers(1, 3))):
            cls = int(rng.integers(0, 2))
            w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            image[y0 : y0 + h, x0 : x0 + w] = COLOURS[cls]
            lines.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
        for split in ("train", "val"):
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.png"), image)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    yaml_path = root / "data.yaml"
    yaml_path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: red\n  1: blue\n")
    return yaml_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A yolov8n trained to a non-zero mAP on the shapes dataset, its checkpoint and its static ONNX export."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("measure")
    data = make_shapes_dataset(root / "shapes")
    model = YOLO("yolov8n.yaml")
    # Augmentation off and no warmup: 50 short epochs memorise the 32 images well enough for a mAP to compare.
    model.train(
        data=str(data), epochs=50, imgsz=IMGSZ, batch=16, device="cpu", workers=0, plots=False, val=False,
        mosaic=0.0, warmup_epochs=0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, scale=0.0, translate=0.0,
        optimizer="AdamW", lr0=0.01, amp=False, project=str(root / "runs"), name="train", exist_ok=True,
        verbose=False,
    )  # fmt: skip
    pt = root / "runs" / "train" / "weights" / "last.pt"
    onnx_path = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ))
    return {"root": root, "data": data, "pt": pt, "onnx": onnx_path}


def test_pt_and_its_onnx_export_measure_the_same_map_params_and_gflops(trained: dict[str, Path]) -> None:
    threads_before = torch.get_num_threads()
    pt, ox = measure([trained["pt"], trained["onnx"]], trained["data"], imgsz=IMGSZ, threads=1, warmup=2, runs=10)
    assert (pt.format, ox.format) == ("pt", "onnx")
    assert pt.map50_95 > 0.05, "the fixture model must have learned something, or the comparison proves nothing"
    assert abs(pt.map50_95 - ox.map50_95) <= 0.01
    assert abs(pt.map50 - ox.map50) <= 0.01
    assert pt.split == ox.split == "val"
    assert math.isclose(pt.params, ox.params, rel_tol=0.01)
    assert math.isclose(pt.gflops, ox.gflops, rel_tol=0.01)
    assert pt.size_mb == trained["pt"].stat().st_size / 1e6
    for m in (pt, ox):
        assert m.imgsz == IMGSZ and m.threads == 1 and m.runs == 10 and m.device == "cpu"
        assert 0 < m.latency_p50_ms <= m.latency_p90_ms
        assert m.throughput_fps > 0
    assert torch.get_num_threads() == threads_before


def test_yolov8n_counts_match_ultralytics_own_flops_and_params(trained: dict[str, Path]) -> None:
    from ultralytics.utils.torch_utils import get_flops

    model, _ = load_checkpoint(trained["pt"])
    model = model.fuse(verbose=False)
    params, gflops = torch_counts(model, IMGSZ)
    assert params == sum(p.numel() for p in model.parameters())
    # THOP (Ultralytics' own counter) also counts 2 x MACs; yolov8n (2 classes) is ~8.1 GFLOPs at 640.
    assert math.isclose(gflops, get_flops(model, IMGSZ), rel_tol=0.03)
    assert 0.07 < gflops < 0.09


def test_dynamic_onnx_is_counted_at_the_requested_imgsz(trained: dict[str, Path], tmp_path: Path) -> None:
    from ultralytics import YOLO

    pt = tmp_path / "dynamic.pt"  # export writes next to the checkpoint: keep the fixture's static ONNX intact
    shutil.copy(trained["pt"], pt)
    dynamic = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, dynamic=True))
    model, _ = load_checkpoint(pt)
    pt_params, pt_gflops = torch_counts(model.fuse(verbose=False), 128)
    ox_params, ox_gflops = onnx_counts(dynamic, 128)
    assert math.isclose(ox_params, pt_params, rel_tol=0.01)
    assert math.isclose(ox_gflops, pt_gflops, rel_tol=0.01)
    assert math.isclose(ox_gflops, 4 * onnx_counts(dynamic, IMGSZ)[1], rel_tol=0.01)


def test_quantized_onnx_graphs_count_like_the_float_graph(trained: dict[str, Path], tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class OneImage(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"images": model_input(IMGSZ)}])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    float_counts = onnx_counts(trained["onnx"], IMGSZ)
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):  # QLinearConv graph, and Conv fed by DequantizeLinear
        out = tmp_path / f"int8_{fmt.name}.onnx"
        quantize_static(
            str(trained["onnx"]), str(out), OneImage(), quant_format=fmt,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        )  # fmt: skip
        params, gflops = onnx_counts(out, IMGSZ)
        assert params == float_counts[0], fmt
        assert math.isclose(gflops, float_counts[1], rel_tol=1e-6), fmt


def test_validation_batch_does_not_change_pt_map(trained: dict[str, Path]) -> None:
    # A static ONNX is validated at batch 1; with square letterbox the .pt's batch must not matter.
    batch_1 = validate(trained["pt"], trained["data"], imgsz=IMGSZ, batch=1)
    batch_16 = validate(trained["pt"], trained["data"], imgsz=IMGSZ, batch=16)
    assert batch_1[1] > 0.05
    assert batch_1 == pytest.approx(batch_16, abs=1e-4)


def test_split_missing_from_the_dataset_is_a_data_error_naming_the_yaml(trained: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="no 'test:' split") as error:
        measure([trained["pt"]], trained["data"], imgsz=IMGSZ, split="test", latency=False)
    assert str(trained["data"]) in str(error.value)


def test_onnx_fixed_to_another_imgsz_is_refused_naming_the_file(trained: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="imgsz") as error:
        onnx_counts(trained["onnx"], 128)
    assert str(trained["onnx"]) in str(error.value)


def _tiny_graph(path: Path) -> Path:
    """Conv(3->8, 3x3, bias) -> BN -> Relu -> GAP -> Flatten -> Gemm(8->4, bias) -> Mul(anchor constant)."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    initializers = [
        init("w", 8, 3, 3, 3), init("b", 8), init("bn_s", 8), init("bn_b", 8), init("bn_m", 8),
        numpy_helper.from_array(np.ones(8, np.float32), "bn_v"), init("fc_w", 8, 4), init("fc_b", 4),
        init("anchors", 1, 4),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y0"]),
        helper.make_node("Mul", ["y0", "anchors"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_counts_compute_weights_and_norm_params_but_not_constants(tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path / "tiny.onnx")
    params, gflops = onnx_counts(path, 16)
    assert params == 8 * 27 + 8 + 8 + 8 + 8 * 4 + 4  # conv w/b, BN scale/bias, gemm w/b; no running stats, no anchors
    assert gflops == pytest.approx(2 * (8 * 16 * 16 * 27 + 8 * 4) / 1e9)
    assert onnx_counts(path, 32)[1] == pytest.approx(2 * (8 * 32 * 32 * 27 + 8 * 4) / 1e9)


def _fake_models(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.fake", tmp_path / "b.fake"
    a.write_bytes(b"a" * 1000)
    b.write_bytes(b"b" * 3000)
    return a, b


def test_latency_is_timed_round_robin_through_the_runtime_opener(tmp_path: Path) -> None:
    a, b = _fake_models(tmp_path)
    calls: list[tuple[str, int, tuple[int, ...], float]] = []

    def opener(path: Path, threads: int):
        if path.suffix != ".fake":
            return None
        return lambda x: calls.append((path.stem, torch.get_num_threads(), x.shape, float(x.max())))

    threads_before = torch.get_num_threads()
    ma, mb = measure([a, b], None, imgsz=32, threads=3, warmup=1, runs=4, accuracy=False, runtime_opener=opener)
    assert [c[0] for c in calls] == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert {c[1] for c in calls} == {3}  # torch runs with the requested threads while timing ...
    assert torch.get_num_threads() == threads_before  # ... and gets its own count back afterwards
    assert {c[2] for c in calls} == {(1, 3, 32, 32)} and all(0 < c[3] <= 1 for c in calls)
    assert (ma.params, ma.gflops, ma.map50_95, ma.split) == (None, None, None, None)
    assert (ma.size_mb, mb.size_mb) == (0.001, 0.003)
    assert ma.runs == 4 and 0 < ma.latency_p50_ms <= ma.latency_p90_ms


def test_format_without_runtime_is_a_model_error_naming_the_file(tmp_path: Path) -> None:
    a, _ = _fake_models(tmp_path)
    with pytest.raises(ModelError, match="no runtime") as error:
        measure([a], None, accuracy=False)
    assert str(a) in str(error.value)
    with pytest.raises(ModelError, match="no runtime"):
        measure([a], None, accuracy=False, runtime_opener=lambda path, threads: None)


def test_missing_model_and_accuracy_without_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as error:
        measure([tmp_path / "gone.pt"], None, accuracy=False)
    assert str(tmp_path / "gone.pt") in str(error.value)
    a, _ = _fake_models(tmp_path)
    with pytest.raises(DataError, match="data="):
        measure([a], None, runtime_opener=lambda path, threads: lambda x: None)


def _row(name: str, **values: object) -> Measurement:
    base = dict(name=name, path=f"/m/{name}", format="onnx", imgsz=320, params=3_006_038, gflops=8.08, size_mb=12.1)
    return Measurement(**{**base, **values})


def test_format_table_has_one_row_per_model_and_dashes_for_missing_values() -> None:
    table = format_table([_row("base", map50=0.9, map50_95=0.61234, latency_p50_ms=13.6, latency_p90_ms=14.2,
                                   throughput_fps=72.5, threads=2), _row("int8")])  # fmt: skip
    lines = table.strip().splitlines()
    assert lines[0].split("|")[1:-1] == [
        " name ", " format ", " params (M) ", " GFLOPs ", " size MB ", " mAP50 ", " mAP50-95 ", " p50 ms ",
        " p90 ms ", " FPS ", " threads ",
    ]  # fmt: skip
    assert lines[2] == "| base | onnx | 3.006 | 8.08 | 12.10 | 0.9000 | 0.6123 | 13.60 | 14.20 | 72.5 | 2 |"
    assert lines[3] == "| int8 | onnx | 3.006 | 8.08 | 12.10 | - | - | - | - | - | 1 |"


def test_write_json_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    rows = [_row("base", extra={"sparsity": 0.5}), _row("int8", map50_95=0.6)]
    out = write_json(rows, tmp_path / "report" / "measure.json")
    assert json.loads(out.read_text()) == [r.to_dict() for r in rows]
    assert json.loads(out.read_text())[0]["extra"] == {"sparsity": 0.5}
    assert [p.name for p in out.parent.iterdir()] == ["measure.json"]


def test_counting_leaves_the_model_usable_with_autograd() -> None:
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False).eval()
    torch_counts(model, 64)
    # Eval-mode forward with autograd, as tracing and distillation teachers/students do after a count: it fails
    # with "Inference tensors cannot be saved for backward" if Detect kept anchors cached under inference_mode.
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    model(x)[0].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


# --------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("imgsz", [0, -32, 33, 100, 1.5, True])
def test_imgsz_must_be_a_positive_multiple_of_the_stride(imgsz: object) -> None:
    with pytest.raises(DataError, match="--imgsz .*multiple of the model's stride 32"):
        check_imgsz(imgsz)
    assert check_imgsz(64) == 64 and check_imgsz(128, stride=64) == 128
    with pytest.raises(DataError, match="pass --imgsz 64 or 128"):
        check_imgsz(96, stride=64)


@pytest.mark.parametrize("check", [check_threads, check_runs])
@pytest.mark.parametrize("value", [0, -1, 2.0, None])
def test_threads_and_runs_must_be_at_least_one(check, value: object) -> None:
    with pytest.raises(DataError, match="at least 1"):
        check(value)
    assert check(1) == 1


# --------------------------------------------------------------------------------------------- rows and tables


def test_rows_know_their_source_and_stage_in_json_and_in_the_table(tmp_path: Path) -> None:
    rows = [
        _row("original"),
        _row("pruned", source="/runs/slim/demo/original.pt", stage="prune"),
        _row("int8", source=None, stage="quantize"),
    ]
    assert (rows[0].source, rows[0].stage) == (None, None)
    out = json.loads(write_json(rows, tmp_path / "rows.json").read_text())
    assert [(r["source"], r["stage"]) for r in out] == [
        (None, None),
        ("/runs/slim/demo/original.pt", "prune"),
        (None, "quantize"),
    ]
    lines = format_table(rows).strip().splitlines()
    assert lines[0].split("|")[1:5] == [" name ", " format ", " stage ", " source "]
    assert lines[2].startswith("| original | onnx | - | - | 3.006 |")  # None prints as "-", like a missing value
    assert lines[3].startswith("| pruned | onnx | prune | original.pt | 3.006 |")
    assert lines[4].startswith("| int8 | onnx | quantize | - | 3.006 |")
    assert "None" not in format_table(rows)


def test_stage_and_source_columns_appear_only_when_a_row_has_one() -> None:
    header = format_table([_row("a"), _row("b")]).splitlines()[0]
    assert " stage " not in header and " source " not in header
    header = format_table([_row("a"), _row("b", stage="prune")]).splitlines()[0]
    assert " stage " in header and " source " not in header


def test_report_prints_a_none_column_value_as_a_dash_like_a_missing_key() -> None:
    from yoloslim.report import render_markdown

    rows = [_row("base", extra={"sparsity": None}), _row("pruned", extra={"sparsity": 0.5}), _row("int8")]
    md = render_markdown(rows, {"recipe": "r", "model": "m.pt", "data": "d.yaml", "split": "val", "imgsz": 320})
    plugin = md.split("## Plugin columns")[1]
    assert "| base | - |" in plugin and "| pruned | 0.5 |" in plugin and "| int8 | - |" in plugin
    assert "None" not in md


# --------------------------------------------------------------------------------------------- package


def test_yoloslim_measure_stays_the_function_when_the_measurement_package_and_the_pipeline_are_imported(
    tmp_path: Path,
) -> None:
    # A submodule named ``measure`` would replace the package's public function on import; run in a fresh
    # interpreter so no module this test session imported earlier hides it.
    code = f"""
import inspect, sys
import yoloslim
assert inspect.isfunction(yoloslim.measure), yoloslim.measure
import yoloslim.measurement
assert inspect.isfunction(yoloslim.measure), yoloslim.measure
from yoloslim.errors import YoloslimError
try:
    yoloslim.measure([{str(tmp_path / "gone.pt")!r}], data={str(tmp_path / "none.yaml")!r})
except YoloslimError:
    pass
assert "yoloslim.pipeline" in sys.modules
assert inspect.isfunction(yoloslim.measure), yoloslim.measure
import yoloslim.cli
assert inspect.isfunction(yoloslim.measure), yoloslim.measure
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    import yoloslim

    assert inspect.isfunction(yoloslim.measure)


def test_public_names_point_at_the_modules_that_hold_them() -> None:
    import importlib

    import yoloslim

    for name, (module, attribute) in yoloslim._PUBLIC.items():
        assert getattr(importlib.import_module(module), attribute) is getattr(yoloslim, name), name
    assert yoloslim.model_input is model_input and yoloslim.Measurement is Measurement
