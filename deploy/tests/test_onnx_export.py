"""ONNX adapter: static/dynamic batch, opset, metadata, onnx.checker and the parity gate."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from deploy_helpers import DETECT_IMGSZ

from yoloslim.context import SlimContext
from yoloslim.errors import ExportError
from yoloslim_deploy import Detector, read_metadata
from yoloslim_test_support import run_cli


@pytest.fixture(scope="module")
def exports(detect_ckpt, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """The same checkpoint exported four ways: static batch 1, static batch 4 at opset 17, dynamic batch, FP16."""
    out = tmp_path_factory.mktemp("onnx")
    ctx = SlimContext(imgsz=DETECT_IMGSZ, data=str(tiny_data))
    return {
        "b1": ctx.export(detect_ckpt, "onnx", out / "b1.onnx"),
        "b4": ctx.export(detect_ckpt, "onnx", out / "b4.onnx", batch=4, opset=17),
        "dyn": ctx.export(detect_ckpt, "onnx", out / "dyn.onnx", dynamic=True),
        "fp16": ctx.export(detect_ckpt, "onnx", out / "fp16.onnx", half=True),
    }


def test_metadata_round_trips_names_imgsz_stride_precision_and_parity(exports, detect_ckpt):
    from yoloslim.checkpoint import load_checkpoint

    model, _ = load_checkpoint(detect_ckpt)
    meta = read_metadata(exports["b1"])
    assert meta.names == model.names
    assert meta.imgsz == (DETECT_IMGSZ, DETECT_IMGSZ)
    assert meta.stride == 32 and meta.batch == 1 and not meta.dynamic
    assert meta.precision == "fp32"
    assert meta.yoloslim["source"] == str(Path(detect_ckpt).resolve())  # the full path, not a bare name
    assert meta.source == Path(detect_ckpt).resolve() and meta.source.is_absolute()
    parity = meta.yoloslim["parity"]
    assert parity["ok"] and parity["images"] >= 4  # real validation images of the run's dataset
    assert parity["max_box_diff"] <= parity["box_tol"] == 0.05
    assert parity["max_score_diff"] <= parity["score_tol"] == 1e-3
    onnx.checker.check_model(onnx.load(str(exports["b1"])), full_check=True)
    assert not [p for p in exports["b1"].parent.iterdir() if p.name.startswith(".")]


def test_export_from_a_relative_path_records_the_absolute_source(detect_ckpt, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(detect_ckpt).parent)
    ctx = SlimContext(imgsz=DETECT_IMGSZ, data=str(tiny_data))
    out = ctx.export(Path(Path(detect_ckpt).name), "onnx", tmp_path / "rel.onnx", parity=False)
    assert read_metadata(out).source == Path(detect_ckpt).resolve()


def test_a_file_whose_source_is_a_bare_name_still_reads_and_runs(exports, detect_images, tmp_path):
    """Files exported before the full path was recorded name their checkpoint by file name only."""
    model = onnx.load(str(exports["b1"]))
    prop = next(p for p in model.metadata_props if p.key == "yoloslim")
    prop.value = json.dumps({**json.loads(prop.value), "source": "detect.pt"})
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    meta = read_metadata(old)
    assert meta.yoloslim["source"] == "detect.pt" and meta.source == Path("detect.pt")
    image = cv2.imread(str(detect_images[0]))
    np.testing.assert_array_equal(Detector(old)(image).xyxy, Detector(exports["b1"])(image).xyxy)


def test_static_batch_opset_and_dynamic_batch_are_what_was_asked(exports):
    b4 = onnx.load(str(exports["b4"]))
    assert b4.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert next(o.version for o in b4.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert read_metadata(exports["b4"]).batch == 4
    dyn = read_metadata(exports["dyn"])
    assert dyn.dynamic and dyn.batch is None
    dim = onnx.load(str(exports["dyn"])).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value


def test_batch1_batch4_and_dynamic_exports_give_the_same_detections(exports, detect_images):
    images = [cv2.imread(str(p)) for p in detect_images[:6]]  # 6 images: batch 4 runs one full and one padded call
    results = {k: Detector(exports[k])(images) for k in ("b1", "b4", "dyn")}
    assert sum(len(d) for d in results["b1"]) > 10
    for other in ("b4", "dyn"):
        for a, b in zip(results["b1"], results[other]):
            assert len(a) == len(b)
            np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)  # px; same graph, only the batch differs
            np.testing.assert_allclose(a.conf, b.conf, atol=1e-5)
            np.testing.assert_array_equal(a.cls, b.cls)


def test_fp16_export_is_checked_sorted_and_within_the_fp16_tolerance(exports):
    meta = read_metadata(exports["fp16"])
    assert meta.precision == "fp16"
    parity = meta.yoloslim["parity"]
    assert parity["ok"] and (parity["box_tol"], parity["score_tol"]) == (2.0, 0.02)
    assert parity["max_box_diff"] > 0  # really FP16: weights are rounded
    model = onnx.load(str(exports["fp16"]))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)


def test_parity_failure_fails_the_export_and_leaves_no_file(detect_ckpt, tmp_path, monkeypatch):
    import yoloslim_deploy.onnx_adapter as adapter

    real = adapter.onnx_output
    monkeypatch.setattr(adapter, "onnx_output", lambda *a, **k: real(*a, **k) + np.float32(0.5))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differs from the PyTorch model: max box diff 0\.5\d* px") as e:
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", out)
    assert "\n" not in str(e.value) and "parity_tolerance" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_option_and_bad_checkpoint_are_one_line_errors(detect_ckpt, tmp_path):
    from yoloslim.errors import ModelError

    with pytest.raises(ExportError, match=r"unknown ONNX export option\(s\) \['int4'\]"):
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", tmp_path / "x.onnx", int4=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pt: not a loadable Ultralytics checkpoint"):
        SlimContext(imgsz=DETECT_IMGSZ).export(bad, "onnx", tmp_path / "y.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_yoloslim_metadata_records_the_recipe_and_stage(detect_ckpt, tmp_path):
    from yoloslim.recipe import Stage

    ctx = SlimContext(
        imgsz=DETECT_IMGSZ,
        recipe_path="recipes/demo.yaml",
        stage=Stage(index=1, name="export", type="export", options={}),
    )
    out = ctx.export(detect_ckpt, "onnx", tmp_path / "s.onnx", parity=False)
    extra = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["yoloslim"])
    assert extra["recipe"] == "recipes/demo.yaml" and extra["stage"] == "export"
    assert "parity" not in extra


def test_export_cli_passes_format_options_and_rejects_malformed_ones(detect_ckpt, tmp_path):
    out = tmp_path / "cli.onnx"
    r = run_cli(
        "export",
        str(detect_ckpt),
        "--out",
        str(out),
        "--imgsz",
        str(DETECT_IMGSZ),
        "-o",
        "batch=2",
        "--option",
        "opset=17",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    r = run_cli("export", str(detect_ckpt), "--out", str(tmp_path / "bad.onnx"), "-o", "batch")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "yoloslim: error: --option 'batch': expected KEY=VALUE, e.g. --option dynamic=true"
    )
