"""Camera app: a generated video in, an annotated video and one JSON line per frame out; clear source errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from deploy_helpers import DETECT_IMGSZ, GEN_IMGSZ

from yoloslim.context import SlimContext
from yoloslim_test_support import subprocess_env

APP = Path(__file__).resolve().parents[1] / "apps" / "camera.py"
FRAMES = 12


@pytest.fixture(scope="module")
def model(detect_ckpt, tmp_path_factory) -> Path:
    return SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", tmp_path_factory.mktemp("cam") / "m.onnx")


@pytest.fixture(scope="module")
def video(detect_images, tmp_path_factory) -> Path:
    """A 12-frame 128x96 video of the tiny dataset's images."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for i in range(FRAMES):
        writer.write(cv2.resize(cv2.imread(str(detect_images[i % len(detect_images)])), (128, 96)))
    writer.release()
    return path


def camera(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, env=subprocess_env())


def test_headless_run_writes_every_frame_and_one_json_line_per_frame(model, video, tmp_path):
    out = tmp_path / "out"
    r = camera("--model", str(model), "--source", str(video), "--headless", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == FRAMES
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (128, 96)
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(FRAMES))
    assert sum(len(d["detections"]) for d in lines) > 0
    first = next(d["detections"][0] for d in lines if d["detections"])
    assert set(first) == {"xyxy", "conf", "cls", "label"} and len(first["xyxy"]) == 4
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "detections.jsonl"]


def test_start_frame_skips_the_head_of_the_clip_and_the_run_reports_the_detector_speed(model, video, tmp_path):
    out = tmp_path / "out"
    r = camera("--model", str(model), "--source", str(video), "--headless", "--out", str(out), "--start-frame", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((out / "detections.jsonl").read_text().splitlines()) == FRAMES - 8
    assert f"camera: {FRAMES - 8} frames, detector " in r.stdout and "FPS)" in r.stdout
    r = camera(
        "--model", str(model), "--source", str(video), "--headless", "--out", str(tmp_path / "x"), "--start-frame", "-1"
    )
    assert r.returncode == 2 and r.stderr.strip() == "camera: error: --start-frame -1: pass a frame index >= 0"


def test_headless_run_with_an_nms_free_end_to_end_onnx_writes_detections(detect_ckpt_yolo26, video, tmp_path):
    model = SlimContext(imgsz=GEN_IMGSZ).export(
        detect_ckpt_yolo26, "onnx", tmp_path / "e2e.onnx", nms=False, parity=False
    )
    out = tmp_path / "out"
    r = camera(
        "--model",
        str(model),
        "--source",
        str(video),
        "--headless",
        "--out",
        str(out),
        "--max-frames",
        "4",
        "--conf",
        "0.1",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in lines] == [0, 1, 2, 3]
    found = [det for d in lines for det in d["detections"]]
    assert found and all(det["conf"] > 0.1 and 0 <= det["xyxy"][0] <= det["xyxy"][2] <= 128 for det in found)
    assert (out / "annotated.mp4").stat().st_size > 0


def test_image_folder_source_runs_to_the_end(model, detect_images, tmp_path):
    out = tmp_path / "out"
    r = camera("--model", str(model), "--source", str(detect_images[0].parent), "--headless", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((out / "detections.jsonl").read_text().splitlines()) == len(detect_images)


@pytest.mark.parametrize(
    "source,message",
    [
        ("missing.mp4", "no such file or folder"),
        ("corrupt.mp4", "OpenCV cannot open it"),
    ],
)
def test_unopenable_source_exits_non_zero_with_one_line(model, tmp_path, source, message):
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video")
    r = camera("--model", str(model), "--source", str(tmp_path / source), "--headless", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"camera: error: source '{tmp_path / source}': {message}")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_model_exits_non_zero_with_one_line(video, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage, not a protobuf")
    r = camera("--model", str(corrupt), "--source", str(video), "--headless", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"camera: error: {corrupt}: not a readable ONNX file")
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()
