"""YOLO11 and YOLO26 through the deploy layer: both output layouts (NMS after the model, and YOLO26's NMS-free
end-to-end head exported with ``nms=False``) from export through parity, metadata, ``Detector`` and the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from deploy_helpers import GEN_IMGSZ, assert_same_detections

from yoloslim.context import SlimContext
from yoloslim.errors import ExportError, ModelError
from yoloslim_deploy import Detector, read_metadata
from yoloslim_deploy.parity import compare_outputs
from yoloslim_test_support import run_cli

K = 84  # anchors at 64 px (8x8 + 4x4 + 2x2): an end-to-end export keeps the top min(max_det=300, 84)


def output_dims(path: Path) -> list[int]:
    return [d.dim_value for d in onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def ckpts(detect_ckpt_yolo11, detect_ckpt_yolo26) -> dict[str, Path]:
    return {"yolo11n": detect_ckpt_yolo11, "yolo26n": detect_ckpt_yolo26}


@pytest.fixture(scope="module")
def exports(ckpts, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """Default exports of both models, and YOLO26 exported with nms=False (its NMS-free one-to-one head)."""
    out = tmp_path_factory.mktemp("gen")
    ctx = SlimContext(imgsz=GEN_IMGSZ, data=str(tiny_data))
    return {
        "yolo11n": ctx.export(ckpts["yolo11n"], "onnx", out / "yolo11n.onnx"),
        "yolo26n": ctx.export(ckpts["yolo26n"], "onnx", out / "yolo26n.onnx"),
        "yolo26n-e2e": ctx.export(ckpts["yolo26n"], "onnx", out / "yolo26n-e2e.onnx", nms=False),
    }


@pytest.fixture(scope="module")
def images(detect_images) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in detect_images]


@pytest.mark.parametrize("name", ["yolo11n", "yolo26n"])
def test_default_export_has_the_nms_layout_and_the_checkpoints_detections(name, ckpts, exports, images):
    meta = read_metadata(exports[name])
    assert output_dims(exports[name]) == [1, 4 + len(meta.names), K]
    assert meta.end2end is False and meta.yoloslim["end2end"] is False
    assert meta.yoloslim["parity"]["ok"] and not meta.yoloslim["parity"]["end2end"]
    pt = Detector(ckpts[name])
    assert pt.meta.end2end is False  # a .pt runs the one-to-many head by default, as the default export does
    ox = Detector(exports[name])
    assert sum(assert_same_detections(a, b) for a, b in zip(pt(images), ox(images))) > 50
    assert ox.end2end is False


def test_yolo26_nms_false_export_gives_top_k_detections_matching_the_one_to_one_head(ckpts, exports, images):
    path = exports["yolo26n-e2e"]
    assert output_dims(path) == [1, K, 6]
    meta = read_metadata(path)
    assert meta.end2end is True and meta.yoloslim["end2end"] is True
    parity = meta.yoloslim["parity"]  # the PyTorch reference ran its one-to-one head too
    assert parity["ok"] and parity["end2end"] and parity["max_box_diff"] <= 0.05 and parity["max_score_diff"] <= 1e-3
    pt = Detector(ckpts["yolo26n"], end2end=True)
    assert pt.infer(pt.preprocess(images[:2])).shape == (2, K, 6)
    ox = Detector(path)
    e2e_pt, e2e_ox = pt(images), ox(images)
    assert ox.end2end is True
    assert sum(assert_same_detections(a, b, k=K) for a, b in zip(e2e_pt, e2e_ox)) > 50
    nms = Detector(ckpts["yolo26n"])(images)  # the one-to-many head: other detections
    assert [len(d) for d in nms] != [len(d) for d in e2e_pt]
    d = next(d for d in e2e_ox if len(d))
    assert (np.diff(d.conf) <= 0).all() and set(d.cls.tolist()) <= set(ox.names)
    with pytest.raises(ModelError, match=r"NMS-free end-to-end \(batch, k, 6\) layout but end2end=False"):
        Detector(path, end2end=False)


def test_nms_false_on_a_head_without_one_to_one_branch_keeps_the_nms_layout(ckpts, tmp_path):
    out = SlimContext(imgsz=GEN_IMGSZ).export(ckpts["yolo11n"], "onnx", tmp_path / "m.onnx", nms=False)
    meta = read_metadata(out)
    assert output_dims(out) == [1, 4 + len(meta.names), K]
    assert meta.end2end is False and meta.yoloslim["parity"]["ok"]


def test_embedded_nms_and_non_boolean_nms_are_refused_with_one_line(ckpts, tmp_path):
    with pytest.raises(ExportError, match=r"ONNX export option nms=True embeds NMS in the graph.*nms=false") as e:
        SlimContext(imgsz=GEN_IMGSZ).export(ckpts["yolo26n"], "onnx", tmp_path / "m.onnx", nms=True)
    assert "\n" not in str(e.value)
    with pytest.raises(ExportError, match=r"ONNX export option nms='yes'; pass nms=false"):
        SlimContext(imgsz=GEN_IMGSZ).export(ckpts["yolo26n"], "onnx", tmp_path / "m.onnx", nms="yes")
    assert list(tmp_path.iterdir()) == []


def test_export_cli_nms_false_writes_an_end_to_end_onnx_of_a_trained_yolo26(tiny_ckpt_yolo26, detect_images, tmp_path):
    out = tmp_path / "e2e.onnx"
    r = run_cli("export", str(tiny_ckpt_yolo26), "--out", str(out), "-o", "nms=false")  # imgsz: its training size
    assert r.returncode == 0, r.stderr[-3000:]
    assert output_dims(out) == [1, K, 6] and read_metadata(out).end2end is True
    # One epoch leaves near-equal scores (see deploy_helpers), so runtimes may order ties differently: compare the
    # sorted confidences, which do not depend on that order.
    image = cv2.imread(str(detect_images[0]))
    ox = Detector(out, conf=0.001)(image)
    pt = Detector(tiny_ckpt_yolo26, conf=0.001, end2end=True)(image)
    assert 0 < len(ox) == len(pt) <= K
    np.testing.assert_allclose(np.sort(ox.conf), np.sort(pt.conf), atol=1e-6)


def test_end_to_end_parity_ignores_tie_order_and_swaps_at_the_cut_but_not_moved_boxes():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 60, (1, 5, 4)).astype(np.float32)
    scores = np.array([0.9, 0.5, 0.5, 0.3, 0.1], np.float32)
    ref = np.concatenate([boxes, scores[None, :, None], np.array([0, 1, 2, 1, 0], np.float32)[None, :, None]], 2)
    swapped = ref[:, [0, 2, 1, 3, 4]].copy()  # a tie listed in the other order
    swapped[0, 4] = [5, 5, 20, 20, 0.1 + 1e-5, 2]  # the last one swapped with another just below the cut
    result = compare_outputs(ref, swapped, end2end=True)
    assert result.ok and result.end2end and result.max_box_diff == 0 and result.max_score_diff <= 2e-5
    moved = ref.copy()
    moved[0, 1, 0] += 3.0  # a confident box moved by 3 px
    result = compare_outputs(ref, moved, end2end=True)
    assert not result.ok and result.max_box_diff == pytest.approx(3.0)


def test_metadata_end2end_comes_from_ultralytics_keys_else_is_unknown(tmp_path):
    from yoloslim_deploy.metadata import engine_bytes_with_header

    base = {"names": "{0: 'a'}", "imgsz": "[64, 64]"}
    cases = {
        "e2e": ({"end2end": "True"}, True),
        "nms": ({"end2end": "False"}, False),
        "embedded": ({"end2end": "False", "args": "{'nms': True}"}, True),
        "old": ({}, None),
    }
    for name, (extra, expected) in cases.items():
        path = tmp_path / f"{name}.engine"
        path.write_bytes(engine_bytes_with_header(b"", {**base, **extra}))
        assert read_metadata(path).end2end is expected, name
