"""TensorRT adapter: one clear line without TensorRT; engine build and parity where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from deploy_helpers import DETECT_IMGSZ
from onnx import TensorProto, helper

from yoloslim.context import SlimContext
from yoloslim.errors import ExportError
from yoloslim_test_support import run_cli

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT is not installed (pip install 'yoloslim[tensorrt]' on a machine with an NVIDIA GPU)"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed; the missing-TensorRT message cannot be checked")
def test_engine_export_without_tensorrt_fails_with_one_clear_line(detect_ckpt, tmp_path):
    out = tmp_path / "m.engine"
    r = run_cli("export", str(detect_ckpt), "--format", "engine", "--out", str(out), "--imgsz", str(DETECT_IMGSZ))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "yoloslim: error: building a TensorRT engine needs the 'tensorrt' package (10.x), which is not installed; "
        "install it with pip install 'yoloslim[tensorrt]' on a machine with an NVIDIA GPU"
    )
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_engine_options_are_checked_before_tensorrt_is_needed(detect_ckpt, tmp_path):
    with pytest.raises(ExportError, match=r"precision='int4'; use fp32, fp16 or int8"):
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "engine", tmp_path / "m.engine", precision="int4")
    with pytest.raises(ExportError, match=r"unknown TensorRT export option\(s\) \['fp8'\]"):
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "engine", tmp_path / "m.engine", fp8=True)


def test_engine_nms_option_is_checked_before_tensorrt_is_needed(detect_ckpt, tmp_path):
    ctx = SlimContext(imgsz=DETECT_IMGSZ)
    with pytest.raises(ExportError, match=r"TensorRT export option nms=True embeds NMS in the graph") as e:
        ctx.export(detect_ckpt, "engine", tmp_path / "m.engine", nms=True)
    assert "\n" not in str(e.value)
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(ExportError, match=r"'.*m\.onnx' is already exported with its own layout"):
        ctx.export(onnx_file, "engine", tmp_path / "m.engine", nms=False)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed; the missing-TensorRT message cannot be checked")
def test_engine_nms_false_is_accepted_and_only_tensorrt_is_missing(detect_ckpt, tmp_path):
    with pytest.raises(ExportError, match=r"needs the 'tensorrt' package"):
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "engine", tmp_path / "m.engine", nms=False)


def test_qdq_graphs_are_recognised_as_explicitly_quantized(tmp_path):
    from yoloslim_deploy.tensorrt_adapter import has_qdq

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [x],
        [y],
        [scale, zero],
    )
    qdq = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(qdq))
    plain = tmp_path / "plain.onnx"
    onnx.save(
        helper.make_model(
            helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]),
            opset_imports=[helper.make_opsetid("", 17)],
        ),
        str(plain),
    )
    assert has_qdq(qdq) and not has_qdq(plain)


def test_engine_metadata_header_round_trips(tmp_path):
    from yoloslim_deploy.metadata import engine_bytes_with_header, engine_header, read_metadata

    path = tmp_path / "m.engine"
    meta = {
        "names": "{0: 'a', 1: 'b'}",
        "imgsz": "[96, 96]",
        "stride": "32",
        "batch": 4,
        "yoloslim": '{"precision": "fp16", "dynamic": false}',
    }
    path.write_bytes(engine_bytes_with_header(b"\x00ENGINE", meta))
    offset, header = engine_header(path)
    assert path.read_bytes()[offset:] == b"\x00ENGINE" and header == meta
    m = read_metadata(path)
    assert m.names == {0: "a", 1: "b"} and m.imgsz == (96, 96) and m.batch == 4 and m.precision == "fp16"


@pytest.mark.skipif(not HAS_TENSORRT, reason=NO_TENSORRT)
@pytest.mark.skipif(HAS_TENSORRT and not _has_cuda(), reason="no CUDA GPU for TensorRT")
@pytest.mark.parametrize("precision,box_tol", [("fp32", 0.5), ("fp16", 2.0)])
def test_engine_detections_match_onnx(detect_ckpt, tiny_data, detect_images, tmp_path, precision, box_tol):
    import cv2

    from yoloslim_deploy import Detector

    ctx = SlimContext(imgsz=DETECT_IMGSZ, data=str(tiny_data))
    onnx_path = ctx.export(detect_ckpt, "onnx", tmp_path / "m.onnx")
    engine = ctx.export(detect_ckpt, "engine", tmp_path / "m.engine", precision=precision, dynamic=True, max_batch=4)
    assert (tmp_path / "m.build.log").read_text() and (tmp_path / "m.timing.cache").stat().st_size > 0
    images = [cv2.imread(str(p)) for p in detect_images[:4]]
    det = Detector(engine, device="cuda")
    assert det.meta.precision == precision and det.meta.dynamic
    ref = Detector(onnx_path)(images)
    for a, b in zip(ref, det(images)):
        top = min(len(a), len(b), 10)  # the most confident detections, well above the threshold
        assert top > 0
        np.testing.assert_allclose(a.xyxy[:top], b.xyxy[:top], atol=box_tol)
        np.testing.assert_array_equal(a.cls[:top], b.cls[:top])
