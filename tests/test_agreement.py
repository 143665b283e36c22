"""Agreement with the FP32 original (yoloslim.agreement), the two head layouts (yoloslim.detections), and the
harness's agreement rows on unlabelled images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from yoloslim.agreement import score
from yoloslim.detections import decode, is_end2end
from yoloslim.errors import ModelError


def _dets(*rows: tuple[float, float, float, float, float, int]) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 6)


REF = [_dets((10, 10, 50, 50, 0.9, 0), (60, 60, 120, 140, 0.8, 1)), _dets((5, 5, 30, 40, 0.7, 2))]


def test_identical_detections_agree_fully_and_a_missing_box_costs_recall_only():
    same = score(REF, REF)
    assert same.f1 == 1.0 and same.precision == 1.0 and same.recall == 1.0
    assert same.map50_95 == pytest.approx(0.995, abs=1e-3)  # the ceiling of Ultralytics' AP interpolation
    missing = score(REF, [REF[0][:1], REF[1]])
    assert missing.precision == 1.0 and missing.recall == pytest.approx(2 / 3)
    assert missing.f1 == pytest.approx(2 * 2 / (3 + 2)) and missing.map50_95 < same.map50_95


def test_a_shifted_box_keeps_f1_at_iou_half_but_loses_map50_95_and_a_wrong_class_is_no_match():
    shifted = [_dets((14, 14, 54, 54, 0.9, 0), (60, 60, 120, 140, 0.8, 1)), REF[1]]  # IoU ~0.67 with the reference
    a = score(REF, shifted)
    assert a.f1 == 1.0 and 0.5 < a.map50_95 < 0.99
    relabelled = [_dets((10, 10, 50, 50, 0.9, 3), (60, 60, 120, 140, 0.8, 1)), REF[1]]
    b = score(REF, relabelled)
    assert b.f1 == pytest.approx(2 * 2 / 6) and b.precision == pytest.approx(2 / 3)


def test_low_scores_count_for_map_but_not_for_f1_and_empty_images_agree():
    low = [_dets((10, 10, 50, 50, 0.1, 0), (60, 60, 120, 140, 0.8, 1)), REF[1]]  # below the 0.25 threshold
    a = score(REF, low)
    assert a.candidate_boxes == 2 and a.recall == pytest.approx(2 / 3) and a.map50_95 > 0.9
    empty = score([_dets()], [_dets()])
    assert empty.f1 == 1.0 and empty.map50_95 == 1.0 and empty.images == 1
    spurious = score([_dets()], [_dets((1, 1, 9, 9, 0.9, 0))])
    assert spurious.f1 == 0.0 and spurious.precision == 0.0 and spurious.map50_95 == 0.0


def test_decode_reads_both_head_layouts_and_refuses_other_shapes():
    nc = 3
    raw = np.zeros((1, 4 + nc, 5), np.float32)  # NMS layout: cx, cy, w, h, class probabilities
    raw[0, :4, 0] = [50, 50, 20, 20]
    raw[0, 4 + 2, 0] = 0.9
    raw[0, :4, 1] = [51, 50, 20, 20]  # a duplicate of the same class: suppressed
    raw[0, 4 + 2, 1] = 0.8
    out = decode(raw, nc)[0]
    assert out.shape == (1, 6) and out[0, 5] == 2 and np.allclose(out[0, :4], [40, 40, 60, 60])
    e2e = np.array([[[40, 40, 60, 60, 0.9, 2], [0, 0, 5, 5, 0.1, 1], [1, 1, 8, 8, 0.5, 0]]], np.float32)
    assert is_end2end(e2e.shape, nc) and not is_end2end(raw.shape, nc)
    out = decode(e2e, nc)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.5]) and out[:, 5].tolist() == [2, 0]
    with pytest.raises(ModelError, match="not a detection head"):
        decode(np.zeros((1, 9, 7), np.float32), nc)


def test_measure_gives_every_row_agreement_with_the_reference_on_unlabelled_images(tiny_data, tmp_path):
    from yoloslim.context import SlimContext
    from yoloslim.dataset import check_dataset, has_labels
    from yoloslim.measurement import format_table, measure
    from yoloslim_test_support import STUDENT

    images = tmp_path / "frames"
    shutil.copytree(Path(tiny_data).parent / "images" / "val", images)
    data = tmp_path / "unlabelled.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: frames\nval: frames\nnames: {check_dataset(tiny_data)['names']}\n")
    assert has_labels(check_dataset(tiny_data), "val") and not has_labels(check_dataset(data), "val")
    onnx = SlimContext(imgsz=96, data=str(tiny_data)).export(STUDENT, "onnx", tmp_path / "m.onnx", imgsz=96)
    rows = measure(
        [onnx, STUDENT], data, imgsz=96, split="val", accuracy=False, latency=False, reference=onnx, agreement_images=6
    )
    for row in rows:
        assert row.map50_95 is None and row.agreement["images"] == 6 and row.agreement["split"] == "val"
    assert rows[0].agreement["f1"] == 1.0 and rows[0].agreement["reference_boxes"] >= 6  # it agrees with itself
    assert rows[1].agreement["f1"] >= 0.95  # the .pt and its FP32 export see the same images
    table = format_table(rows)
    assert "agreement F1@0.5" in table and "| mAP50-95 |" not in table


def test_cli_measure_on_unlabelled_images_reports_agreement_with_the_first_model_not_map(tiny_data, tmp_path):
    from yoloslim.dataset import check_dataset
    from yoloslim_test_support import STUDENT, run_cli

    images = tmp_path / "frames"
    shutil.copytree(Path(tiny_data).parent / "images" / "val", images)
    data = tmp_path / "unlabelled.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: frames\nval: frames\nnames: {check_dataset(tiny_data)['names']}\n")
    out = tmp_path / "bench"
    r = run_cli(
        "bench",
        str(STUDENT),
        str(STUDENT),
        "--data",
        str(data),
        "--imgsz",
        "96",
        "--runs",
        "2",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    header = r.stdout.splitlines()[0]
    assert "agreement mAP50-95" in header and "| mAP50-95 |" not in header
    assert "agreement mAP50-95 with `student_yolov8n.pt` on split `val`" in (out / "bench.md").read_text()
