"""Tests of the quantization plugin: calibration, PTQ targets, the TensorRT check, sensitivity, QAT, stage and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, RecipeError
from yoloslim.testing import synth_shapes
from yoloslim_quant import (
    QuantConfig,
    calibration_images,
    check_tensorrt_qdq,
    decode_nodes,
    layer_sensitivity,
    load_batch,
    qat,
    quantizable_layers,
    quantize_graph,
    rewrite_dfl,
    search_mixed,
    weight_only,
)
from yoloslim_quant.graph import yoloslim_metadata
from yoloslim_quant.options import STAGE_TYPE, parse_options
from yoloslim_quant.ptq import run_onnx
from yoloslim_quant.quantizer import detection_agreement
from yoloslim_test_support import run_cli

CLASS_NAMES = synth_shapes.CLASS_NAMES


def _tensors(out) -> list[torch.Tensor]:
    """Every tensor in a (nested) model output: train-mode heads return tuples, lists or dicts."""
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for v in values for t in _tensors(v)]


def _consts(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_calibration_reads_real_dataset_images_preprocessed_like_the_harness(tiny_data):
    from yoloslim.measurement import model_input

    images = calibration_images(tiny_data, "train", 8)
    train = sorted((Path(tiny_data).parent / "images" / "train").iterdir())
    assert len(images) == 8 and all(p in train for p in images)
    assert len(set(images)) == 8 and images[0] == train[0] and images[-1] != train[7]  # spread over the split
    batch = load_batch(images, 64)
    assert batch.shape == (8, 3, 64, 64) and batch.dtype == np.float32
    assert np.array_equal(batch[3:4], model_input(64, images[3]))
    assert batch.std() > 0.05  # real pictures, not a constant
    with pytest.raises(DataError, match="no 'nope:' split"):
        calibration_images(tiny_data, "nope", 8)


def test_dfl_rewrite_computes_the_same_outputs_and_decode_stays_outside_the_quantized_layers(tiny_onnx, tiny_data):
    model = onnx.load(str(tiny_onnx))
    decode = set(decode_nodes(model))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {"Softmax", "Sigmoid", "Concat"} <= {ops[n] for n in decode}
    assert all(ops[n] != "Conv" or "dfl" in n for n in decode)
    assert len(quantizable_layers(model)) == 63  # yolov8n: every learned conv, not the DFL's
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    before = run_onnx(model.SerializeToString(), x)
    assert rewrite_dfl(model)
    assert "Softmax" in {n.op_type for n in model.graph.node} and not any(
        n.op_type == "Conv" and "dfl" in n.name for n in model.graph.node
    )
    assert np.abs(run_onnx(model.SerializeToString(), x) - before).max() < 1e-3


def test_ptq_cpu_detections_match_fp32_on_the_tiny_dataset(student_onnx, tiny_data, tmp_path):
    """Tolerance: agreement with FP32 (its detections at conf 0.25 as reference) F1@0.5 >= 0.9, mAP50-95 >= 0.7."""
    calib = load_batch(calibration_images(tiny_data, "train", 32), 96)
    out = quantize_graph(student_onnx, tmp_path / "int8.onnx", calib, QuantConfig(target="cpu"))
    model = onnx.load(str(out))
    consts = _consts(model)
    zps = [consts[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zps and all(z.dtype == np.uint8 for z in zps)  # UINT8 activations
    weight_dq = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in consts and consts[n.input[0]].dtype == np.int8
    ]
    assert len(weight_dq) == 62 and all(consts[n.input[1]].size > 1 for n in weight_dq)  # per-channel INT8 weights
    stem = next(n for n in model.graph.node if n.name == "/model.0/conv/Conv")
    assert stem.op_type == "Conv" and consts[stem.input[1]].dtype == np.float32  # the 3-channel stem stays float
    assert yoloslim_metadata(model)["quantization"]["float_stem"] == ["/model.0/conv/Conv"]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers["output0"].op_type == "Concat"  # the decode's last op, float: no DequantizeLinear at the end
    assert yoloslim_metadata(model)["quantization"]["target"] == "cpu"
    assert dict(p for p in ((m.key, m.value) for m in model.metadata_props))["stride"] == "32"  # Ultralytics' keys

    val = load_batch(calibration_images(tiny_data, "val", 16), 96)
    result = detection_agreement(run_onnx(student_onnx, val), run_onnx(out, val), nc=len(CLASS_NAMES))
    assert result["reference_boxes"] >= 10 and result["images"] == 16
    assert result["f1"] >= 0.9 and result["map50_95"] >= 0.7, result


def test_tensorrt_target_passes_the_static_check_and_an_asymmetric_file_fails_it(tiny_onnx, tiny_data, tmp_path):
    calib = load_batch(calibration_images(tiny_data, "train", 8), 64)
    trt = quantize_graph(tiny_onnx, tmp_path / "trt.onnx", calib, QuantConfig(target="tensorrt"))
    model = onnx.load(str(trt))
    assert check_tensorrt_qdq(model) == []
    consts = _consts(model)
    assert all(
        not np.any(consts[n.input[2]]) and consts[n.input[2]].dtype == np.int8
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    )
    assert not any(
        n.op_type == "DequantizeLinear" and n.input[0] in consts and consts[n.input[0]].dtype == np.int32
        for n in model.graph.node
    )

    # Deliberately asymmetric: one activation zero point moved off 0.
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zp = next(t for t in model.graph.initializer if t.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    problems = check_tensorrt_qdq(model)
    assert any("asymmetric quantization, zero point 3 != 0" in p and q.name in p for p in problems), problems

    # Per-channel weight scales on the wrong axis.
    model = onnx.load(str(trt))
    dq = next(
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in _consts(model) and _consts(model)[n.input[1]].size > 1
    )
    next(a for a in dq.attribute if a.name == "axis").i = 1
    assert any("TensorRT needs the output-channel axis 0" in p for p in check_tensorrt_qdq(model))

    # The cpu layout (UINT8, asymmetric, INT32 bias) is not a TensorRT graph.
    cpu = quantize_graph(tiny_onnx, tmp_path / "cpu.onnx", calib, QuantConfig(target="cpu"))
    problems = check_tensorrt_qdq(cpu)
    assert any("found uint8" in p for p in problems) and any("INT32 dequantization" in p for p in problems)


def test_sensitivity_gives_one_score_per_quantizable_layer_and_mixed_keeps_the_top_ones_float(
    tiny_onnx, tiny_data, tmp_path
):
    calib = load_batch(calibration_images(tiny_data, "train", 8), 64)
    cache = tmp_path / "calib.json"
    scores = layer_sensitivity(tiny_onnx, calib, cache, images=4)
    layers = quantizable_layers(onnx.load(str(tiny_onnx)))
    assert list(scores) == layers
    values = np.array(list(scores.values()))
    assert np.isfinite(values).all() and (values >= 0).all() and values.max() > 0 and len(set(values)) > 10

    # An evaluation that meets a 0.5-point budget once two layers are float: the search stops there.
    def evaluate(path: Path) -> float:
        keep = (yoloslim_metadata(onnx.load(str(path))).get("quantization") or {}).get("float_layers")
        return 0.50 if keep is None else 0.50 - (0.02 if len(keep) < 2 else 0.004)

    result = search_mixed(
        tiny_onnx, calib, cache, QuantConfig(), evaluate, scores, budget=0.5, max_layers=8, workdir=tmp_path / "mixed"
    )
    stem = "/model.0/conv/Conv"  # float on the cpu target anyway: not one of the kept layers
    top2 = [k for k in sorted(scores, key=lambda k: -scores[k]) if k != stem][:2]
    assert result.met and result.keep == top2
    assert [s["float_layers"] for s in result.steps] == [0, 1, 2]
    chosen = onnx.load(result.steps[-1]["path"])
    consts = _consts(chosen)
    producers = {o: n for n in chosen.graph.node for o in n.output}
    for node in chosen.graph.node:
        if node.name in top2 or node.name == stem:
            assert node.input[1] in consts and consts[node.input[1]].dtype == np.float32  # float weights
        elif node.name in layers:
            assert producers[node.input[1]].op_type == "DequantizeLinear"


def test_weight_only_is_four_times_smaller_and_close_to_fp32(tiny_onnx, tiny_data, tmp_path):
    out = weight_only(tiny_onnx, tmp_path / "w8.onnx")
    assert out.stat().st_size < 0.35 * Path(tiny_onnx).stat().st_size
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    ref, got = run_onnx(tiny_onnx, x), run_onnx(out, x)
    assert np.abs(ref[:, 4:] - got[:, 4:]).max() < 0.05
    assert yoloslim_metadata(onnx.load(str(out)))["precision"] == "w8a32"


def test_qat_inserts_fake_quant_trains_through_it_and_strips_it(tiny_ckpt, tiny_data):
    from ultralytics.nn.modules import Conv

    from yoloslim.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_ckpt)
    qat.insert(model)
    wrappers = qat.fake_quant_modules(model)
    assert len(wrappers) == 63
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # BN folded into the convs
    assert all(not hasattr(m, "bn") for m in model.modules() if isinstance(m, Conv))
    calib = torch.from_numpy(load_batch(calibration_images(tiny_data, "train", 8), 64))
    assert qat.calibrate(model, [calib[:4], calib[4:]]) == 8
    assert all(not m.observing and float(m.in_scale) > 0 for m in wrappers)
    with torch.no_grad():  # fake quantization changes the output, a little
        float_out = qat.strip(model).eval()(calib[:2])[0]
        quant_out = model.eval()(calib[:2])[0]
    assert 0 < (float_out - quant_out).abs().max() < 0.5 * float_out.abs().max()
    model.train()
    for p in model.parameters():  # as the trainer does; a loaded checkpoint has them frozen
        p.requires_grad_(True)
    loss = sum(t.float().sum() for t in _tensors(model(calib[:2])))
    loss.backward()
    assert wrappers[0].conv.weight.grad is not None and wrappers[0].conv.weight.grad.abs().sum() > 0  # STE

    assert wrappers[0].in_scale.grad is None  # frozen ranges: buffers, untouched by the optimizer

    stripped = qat.strip(model)
    assert not qat.fake_quant_modules(stripped) and qat.fake_quant_modules(model)  # a copy; the live model keeps them
    assert len(stripped.yoloslim_qat_ranges) == 63
    lo, hi = stripped.yoloslim_qat_ranges["model.0.conv"]["in"]
    assert lo <= 0.0 < hi <= 1.01  # the first conv sees images in [0, 1]

    learned, _ = load_checkpoint(tiny_ckpt)
    qat.insert(learned, learn_ranges=True)
    qat.calibrate(learned, [calib])
    learned.train()
    for p in learned.parameters():
        p.requires_grad_(True)
    sum(t.float().sum() for t in _tensors(learned(calib[:2]))).backward()
    first = qat.fake_quant_modules(learned)[0]
    assert isinstance(first.in_scale, torch.nn.Parameter) and first.in_scale.grad is not None  # learned ranges


def test_qat_after_pruning_and_distillation_exports_a_qdq_onnx_that_runs_in_onnxruntime(tiny_ckpt, tiny_data, tmp_path):
    from yoloslim.checkpoint import load_checkpoint, save_checkpoint
    from yoloslim.pipeline import run_stage
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe
    from yoloslim_prune import prune_channels

    model, ckpt = load_checkpoint(tiny_ckpt)
    prune_channels(model, ratio=0.3, imgsz=64)  # what the prune stage does: SplitC2f blocks, fewer channels
    current = save_checkpoint(model, tmp_path / "pruned.pt", train_args=ckpt.get("train_args"))
    pm = get_plugin_manager()
    recipe = parse_recipe(
        {
            "name": "dq",
            "train": {"batch": 8, "val": False},
            "stages": [
                {"type": "distill", "teacher": str(tiny_ckpt), "method": "logit", "epochs": 1},
                {"type": "quantize", "mode": "qat", "epochs": 1, "calib_images": 8},
            ],
        },
        pm.stage_types(),
    )
    ctx = SlimContext(run_dir=tmp_path, data=str(tiny_data), imgsz=64, plugins=pm)
    for stage in recipe.stages:
        ctx.stage, ctx.stage_dir = stage, tmp_path / f"{stage.index + 1:02d}_{stage.name}"
        current = run_stage(stage, current, ctx)
    best = tmp_path / "02_quantize" / "train" / "weights" / "best.pt"
    trained, _ = load_checkpoint(best)
    assert any(type(m).__name__ == "SplitC2f" for m in trained.modules())  # the pruned architecture was trained
    assert not qat.fake_quant_modules(trained) and trained.yoloslim_qat_ranges  # saved stripped, ranges kept
    model = onnx.load(str(current))
    meta = yoloslim_metadata(model)
    assert meta["quantization"]["mode"] == "qat" and meta["quantization"]["qat_ranges"] > 60
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 50
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    y = run_onnx(current, x)
    assert y.shape[:2] == (2, 12) and np.isfinite(y).all()


def test_options_reject_contradictions_with_the_key_and_the_fix():
    with pytest.raises(RecipeError, match="mode 'qat' fine-tunes; give 'epochs' >= 1"):
        STAGE_TYPE.parse({"mode": "qat"}, 0)
    with pytest.raises(RecipeError, match="no 16-bit integer activations"):
        STAGE_TYPE.parse({"target": "tensorrt", "keep_precision": "w8a16"}, 0)
    with pytest.raises(RecipeError, match=r"key 'calib_images': must be >= 1, got 0"):
        STAGE_TYPE.parse({"calib_images": 0})
    assert STAGE_TYPE.parse({"mode": "ptq"}, 3).mode == "ptq"


def test_recipe_stage_runs_mixed_precision_end_to_end_and_reports_it(tiny_ckpt, tiny_data, tmp_path):
    from yoloslim.pipeline import compress
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe

    pm = get_plugin_manager()
    recipe = parse_recipe(
        {
            "name": "q",
            "stages": [{"type": "quantize", "mode": "mixed", "budget": 0.0, "max_float_layers": 1, "calib_images": 8}],
        },
        pm.stage_types(),
    )
    result = compress(tiny_ckpt, tiny_data, recipe, out=tmp_path / "run", imgsz=64, runs=1, plugins=pm)
    rows = {r["name"]: r for r in json.loads(result.report_json.read_text())["measurements"]}
    row = rows["quantize"]
    assert row["format"] == "onnx" and row["map50_95"] is not None and row["latency_p50_ms"] is not None
    assert row["extra"]["target"] == "cpu" and row["extra"]["precision"] in ("int8", "mixed")
    mixed = yoloslim_metadata(onnx.load(row["path"]))["quantization"]["mixed"]
    assert len(mixed["sensitivity"]) == 63 and mixed["steps"][0]["float_layers"] == 0
    assert "latency_cost" in mixed and row["extra"]["float layers"] == len(mixed["keep"])


def test_cli_quantize_tensorrt_writes_a_checked_file_and_rejects_bad_options_in_one_line(
    tiny_ckpt, tiny_data, tmp_path
):
    out = tmp_path / "m_trt.onnx"
    r = run_cli(
        "quantize",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--mode",
        "ptq",
        "--target",
        "tensorrt",
        "--imgsz",
        "64",
        "--calib-images",
        "8",
        "--out",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--runs",
        "1",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.is_file() and check_tensorrt_qdq(out) == []
    assert "quantize" in r.stdout and "tensorrt" in r.stdout

    r = run_cli(
        "quantize",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--mode",
        "qat",
        "--qat-epochs",
        "0",
        "--out",
        str(tmp_path / "x.onnx"),
        "--run-dir",
        str(tmp_path / "run2"),
        cwd=tmp_path,
    )
    assert r.returncode == 1
    # Refused while the one-stage recipe is parsed (StageType.check), before the run directory exists.
    assert r.stderr.strip().splitlines()[-1].startswith("yoloslim: error: quantize: mode 'qat' fine-tunes")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "run2").exists()


def test_mixed_precision_never_ships_worse_than_plain_ptq_and_says_the_budget_was_missed(
    tiny_onnx, tiny_data, tmp_path
):
    calib = load_batch(calibration_images(tiny_data, "train", 8), 64)
    cache = tmp_path / "calib.json"
    scores = layer_sensitivity(tiny_onnx, calib, cache, images=2)

    def evaluate(path: Path) -> float:  # every float layer makes it worse, as measured on a real YOLO11n
        keep = (yoloslim_metadata(onnx.load(str(path))).get("quantization") or {}).get("float_layers")
        return 0.60 if keep is None else 0.55 - 0.01 * len(keep)

    result = search_mixed(
        tiny_onnx, calib, cache, QuantConfig(), evaluate, scores, budget=0.5, max_layers=2, workdir=tmp_path / "mixed"
    )
    assert [s["float_layers"] for s in result.steps] == [0, 1, 2]
    assert result.keep == [] and not result.met and result.drop_points == pytest.approx(5.0)
    assert result.chosen_path == result.steps[0]["path"]


def test_cli_mixed_writes_the_best_try_and_exits_3_when_the_budget_is_missed(
    monkeypatch, tiny_ckpt, tiny_data, tmp_path, capsys
):
    from yoloslim import cli
    from yoloslim_quant import quantizer

    def harsh(data, imgsz, fp32, nc, images, what):  # a score no quantized graph can reach: the budget is missed
        return (lambda path: 1.0 if Path(path) == Path(fp32) else 0.9), "a test score"

    monkeypatch.setattr(quantizer, "_map_evaluator", harsh)
    out = tmp_path / "mixed.onnx"
    code = cli.main(
        [
            "quantize",
            str(tiny_ckpt),
            "--data",
            str(tiny_data),
            "--mode",
            "mixed",
            "--budget",
            "0.5",
            "--max-float-layers",
            "1",
            "--imgsz",
            "64",
            "--calib-images",
            "8",
            "--out",
            str(out),
            "--run-dir",
            str(tmp_path / "run"),
            "--runs",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and out.is_file()
    line = next(x for x in err.splitlines() if x.startswith("yoloslim: target missed:"))
    assert "missed its budget of 0.5 points" in line and "drops 10.00 points with 0 float layers (= plain PTQ)" in line
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Targets missed" in report and "original (onnx fp32)" in report


@pytest.mark.parametrize("generation", ["yolo11", "yolo26"])
def test_ptq_cpu_and_tensorrt_quantize_yolo11_and_yolo26_with_the_decode_left_float(
    generation, request, tiny_data, tmp_path
):
    from yoloslim.context import SlimContext
    from yoloslim.measurement import model_nc
    from yoloslim.plugins import get_plugin_manager
    from yoloslim_quant.quantizer import quantize_checkpoint

    ckpt = request.getfixturevalue(f"tiny_ckpt_{generation}")
    ctx = SlimContext(run_dir=tmp_path, data=str(tiny_data), imgsz=64, plugins=get_plugin_manager())
    opts = parse_options({"calib_images": 8}, 0)
    out = quantize_checkpoint(ckpt, tmp_path / "cpu.onnx", opts, ctx, workdir=tmp_path / "w")
    model = onnx.load(str(out))
    nc = model_nc(out)
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    fp32 = tmp_path / "w" / "fp32.onnx"
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    ref, got = run_onnx(fp32, x), run_onnx(out, x)
    assert got.shape == ref.shape == (2, 4 + nc, 84) and np.isfinite(got).all()
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers[model.graph.output[0].name].op_type != "DequantizeLinear"  # decode float to the end
    check = yoloslim_metadata(model)["quantization"]["agreement_with_fp32"]
    assert {"f1", "map50_95", "on"} <= set(check) and "not used for calibration" in check["on"]

    trt = quantize_checkpoint(
        ckpt,
        tmp_path / "trt.onnx",
        parse_options({"calib_images": 8, "target": "tensorrt"}, 0),
        ctx,
        workdir=tmp_path / "w",
    )
    assert check_tensorrt_qdq(trt) == []


def test_yolo26_end2end_layout_quantizes_with_topk_left_float(tiny_ckpt_yolo26, tiny_data, tmp_path):
    from yoloslim.context import SlimContext
    from yoloslim.plugins import get_plugin_manager
    from yoloslim_quant.quantizer import quantize_checkpoint

    ctx = SlimContext(run_dir=tmp_path, data=str(tiny_data), imgsz=64, plugins=get_plugin_manager())
    out = quantize_checkpoint(
        tiny_ckpt_yolo26,
        tmp_path / "e2e.onnx",
        parse_options({"calib_images": 8, "end2end": True}, 0),
        ctx,
        workdir=tmp_path / "w",
    )
    model = onnx.load(str(out))
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    y = run_onnx(out, x)
    assert y.shape == (2, 84, 6) and np.isfinite(y).all()  # (batch, k = min(max_det, anchors), x1 y1 x2 y2 score cls)
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers[topk.input[0]].op_type not in ("DequantizeLinear", "QuantizeLinear")  # scores reach TopK float
    assert (tmp_path / "w" / "fp32_end2end.onnx").is_file()


@pytest.mark.parametrize("generation", ["yolo11", "yolo26"])
def test_qat_and_mixed_run_on_yolo11_and_yolo26_and_their_int8_files_run(generation, request, tiny_data, tmp_path):
    from yoloslim.pipeline import compress
    from yoloslim.plugins import get_plugin_manager
    from yoloslim.recipe import parse_recipe

    ckpt = request.getfixturevalue(f"tiny_ckpt_{generation}")
    pm = get_plugin_manager()
    recipe = parse_recipe(
        {
            "name": "q",
            "stages": [
                {
                    "type": "quantize",
                    "name": "qat",
                    "mode": "qat",
                    "epochs": 1,
                    "calib_images": 8,
                    "train": {"batch": 8},
                },
                {"type": "quantize", "name": "mixed", "mode": "mixed", "max_float_layers": 1, "calib_images": 8},
            ],
        },
        pm.stage_types(),
    )
    result = compress(ckpt, tiny_data, recipe, out=tmp_path / "run", imgsz=64, runs=1, plugins=pm)
    x = load_batch(calibration_images(tiny_data, "val", 2), 64)
    for name in ("qat", "mixed"):
        path = dict(result.artifacts)[name]
        q = yoloslim_metadata(onnx.load(str(path)))["quantization"]
        y = run_onnx(path, x)
        assert y.shape == (2, 4 + len(CLASS_NAMES), 84) and np.isfinite(y).all()
        assert q["agreement_with_fp32"]["images"] > 0
    assert yoloslim_metadata(onnx.load(str(dict(result.artifacts)["qat"])))["quantization"]["qat_ranges"] > 0
    mixed = yoloslim_metadata(onnx.load(str(dict(result.artifacts)["mixed"])))["quantization"]["mixed"]
    assert [s["float_layers"] for s in mixed["steps"]][0] == 0 and len(mixed["keep"]) <= 1


def test_qat_checkpoints_never_pickle_fake_quantizers_even_without_the_runs_state():
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim_quant import plugin

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    qat.insert(model)
    qat.calibrate(model, [torch.rand(2, 3, 64, 64)])
    inserted = len(qat.fake_quant_modules(model))
    saved = plugin.yoloslim_model_to_save(model, SlimContext())  # a DDP rank's context: no ctx.state["quant"]
    assert inserted > 0 and qat.fake_quant_modules(saved) == []
    assert len(saved.yoloslim_qat_ranges) == inserted
    assert len(qat.fake_quant_modules(model)) == inserted  # the live model keeps training with them
    assert plugin.yoloslim_model_to_save(saved, SlimContext()) is None
