"""Detector: the same image through .pt and its .onnx gives the same detections; clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import DETECT_IMGSZ, assert_same_detections

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, ModelError
from yoloslim_deploy import Detections, Detector


@pytest.fixture(scope="module")
def onnx_file(detect_ckpt, tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "detect.onnx"
    return SlimContext(imgsz=DETECT_IMGSZ, data=str(tiny_data)).export(detect_ckpt, "onnx", out)


def test_pt_and_onnx_give_matching_boxes_and_classes_on_generated_images(detect_ckpt, onnx_file, detect_images):
    images = [cv2.imread(str(p)) for p in detect_images]
    pt, ox = Detector(detect_ckpt)(images), Detector(onnx_file)(images)
    # Every detection of the checkpoint has an ONNX twin: same class, IoU >= 0.95, confidence within 1e-3.
    assert sum(assert_same_detections(a, b) for a, b in zip(pt, ox)) > 50


def test_detections_are_in_original_image_pixels(onnx_file, detect_images):
    det = Detector(onnx_file)
    image = next(im for im in map(cv2.imread, map(str, detect_images)) if len(det(im)) >= 2)
    big = cv2.resize(image, None, fx=3, fy=2, interpolation=cv2.INTER_NEAREST)  # non-square, larger than imgsz
    small, large = det(image), det(big)
    assert isinstance(small, Detections) and small.shape == image.shape[:2] and len(large) > 0
    h, w = big.shape[:2]
    assert (large.xyxy[:, [0, 2]] >= 0).all() and (large.xyxy[:, [0, 2]] <= w).all()
    assert (large.xyxy[:, [1, 3]] >= 0).all() and (large.xyxy[:, [1, 3]] <= h).all()
    assert (np.diff(large.conf) <= 0).all()  # highest confidence first
    assert large.to_list()[0]["label"] in det.names.values()


def test_corrupt_or_missing_model_files_give_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage, not a protobuf")
    with pytest.raises(ModelError, match=r"corrupt\.onnx: not a readable ONNX file.*export it again") as e:
        Detector(corrupt)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match=r"missing\.onnx: model file not found"):
        Detector(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match=r"unknown model format '\.tflite'"):
        (tmp_path / "m.tflite").write_bytes(b"x")
        Detector(tmp_path / "m.tflite")


def test_non_image_input_is_a_data_error(onnx_file):
    with pytest.raises(DataError, match=r"image 0 has 5 channels \(shape \(10, 10, 5\)\); pass BGR"):
        Detector(onnx_file)([np.zeros((10, 10, 5), np.uint8)])


def test_onnx_without_ultralytics_metadata_is_refused(onnx_file, tmp_path):
    import onnx

    model = onnx.load(str(onnx_file))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ModelError, match=r"bare\.onnx: carries no Ultralytics metadata"):
        Detector(bare)
