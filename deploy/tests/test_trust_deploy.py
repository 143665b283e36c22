"""Issue 15 for the deploy layer: Detector input checks and ``trust``; the camera app on bad frames, bad arguments,
no display and unwritable outputs; the export adapters' format hook, stale work folders and swallowed interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import DETECT_IMGSZ

from yoloslim.context import SlimContext
from yoloslim.errors import DataError, ModelError
from yoloslim_deploy import Detector
from yoloslim_test_support import stray_temp_files, subprocess_env

APP = Path(__file__).resolve().parents[1] / "apps" / "camera.py"


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and 0 < len(message) < 400, message
    return message


@pytest.fixture(scope="module")
def det(detect_ckpt) -> Detector:
    return Detector(detect_ckpt)


@pytest.fixture(scope="module")
def image(det, detect_images) -> np.ndarray:
    """A real BGR image on which the detector finds something."""
    return next(im for im in map(cv2.imread, map(str, detect_images)) if len(det(im)) >= 2)


# ---------------------------------------------------------------------------------------------------------------
# Detector


@pytest.mark.parametrize("path", [None, "", 3])
def test_detector_refuses_a_model_path_that_is_not_a_path_with_a_data_error(path):
    with pytest.raises(DataError, match=r"model path .*pass the path to a \.pt, \.onnx or \.engine file") as e:
        Detector(path)
    one_line(e.value)


def test_detector_on_a_missing_file_names_it_in_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"nothere\.pt: model file not found") as e:
        Detector(tmp_path / "nothere.pt")
    one_line(e.value)


@pytest.mark.parametrize(
    "bad,words",
    [
        (None, ["image 0 is None", "check the path"]),
        (np.zeros((0, 0, 3), np.uint8), ["image 0 is empty", "(0, 0, 3)"]),
        (np.zeros((0, 0), np.uint8), ["image 0 is empty"]),
        (np.full((64, 64, 3), 0.5, np.float32), ["dtype float32", "uint8 BGR", "(img * 255).astype(np.uint8)"]),
        (np.full((64, 64, 3), 0.5, np.float64), ["dtype float64", "(img * 255).astype(np.uint8)"]),
        (np.full((64, 64, 3), 30000, np.uint16), ["dtype uint16", "uint8 BGR", "astype(np.uint8)"]),
        (np.zeros((64, 64, 2), np.uint8), ["2 channels", "BGR (3 channels)"]),
        (np.zeros((64, 64, 5), np.uint8), ["5 channels", "BGR (3 channels)"]),
        (np.zeros((64,), np.uint8), ["1-D", "(H, W, 3)"]),
        (np.zeros((1, 1, 64, 64, 3), np.uint8), ["5-D", "(H, W, 3)"]),
        ("frame.jpg", ["expected an image", "got str"]),
    ],
)
def test_detector_refuses_bad_images_with_one_data_error_line_each(det, bad, words):
    with pytest.raises(DataError) as e:
        det(bad)
    message = one_line(e.value)
    for word in words:
        assert word in message, (word, message)


def test_detector_names_the_bad_image_of_a_batch(det, image):
    with pytest.raises(DataError, match=r"^image 1 has dtype float32"):
        det([image, image.astype(np.float32) / 255])


def test_grayscale_and_bgra_images_are_converted_to_bgr(det, detect_ckpt, image):
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    low = Detector(detect_ckpt, conf=0.01)  # the generated model is less sure of grey images
    as_bgr = low(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert len(as_bgr) > 0
    for variant in (gray, gray[..., None]):
        d = low(variant)
        assert d.shape == gray.shape
        np.testing.assert_array_equal(d.xyxy, as_bgr.xyxy)
        np.testing.assert_array_equal(d.cls, as_bgr.cls)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 17  # alpha is dropped, whatever it holds
    d, ref = det(bgra), det(image)
    assert len(ref) >= 2
    np.testing.assert_array_equal(d.xyxy, ref.xyxy)
    np.testing.assert_array_equal(d.conf, ref.conf)
    # A batch mixes them freely.
    mixed = low([image, gray, bgra])
    assert [len(x) for x in mixed] == [len(low(image)), len(as_bgr), len(low(image))]


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"conf": 5}, ["conf=5", "between 0 and 1"]),
        ({"conf": -0.1}, ["conf=-0.1"]),
        ({"iou": 1.5}, ["iou=1.5"]),
        ({"imgsz": 0}, ["imgsz=0", "positive multiple"]),
        ({"imgsz": -64}, ["imgsz=-64", "positive multiple"]),
        ({"imgsz": 100}, ["imgsz=100", "stride 32", "pass e.g. 96"]),
    ],
)
def test_detector_checks_thresholds_and_image_size(detect_ckpt, kwargs, words):
    with pytest.raises(DataError) as e:
        Detector(detect_ckpt, **kwargs)
    message = one_line(e.value)
    for word in words:
        assert word in message, (word, message)
    assert Detector(detect_ckpt, imgsz=64).imgsz == 64


def test_detector_passes_trust_to_the_checkpoint_loader(detect_ckpt, monkeypatch):
    import yoloslim

    seen = []
    original = yoloslim.load_checkpoint

    def recording(path, trust=None):
        seen.append(trust)
        return original(path, trust=trust)

    monkeypatch.setattr(yoloslim, "load_checkpoint", recording)  # the public name TorchRuntime loads through
    Detector(detect_ckpt)
    Detector(detect_ckpt, trust=True)
    Detector(detect_ckpt, trust=False)
    assert seen == [None, True, False]


class _Payload:
    """Unpickling this touches ``marker``: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_detector_refuses_a_checkpoint_with_a_pickle_payload_unless_trusted(detect_ckpt, tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("YOLOSLIM_TRUST_CHECKPOINTS", raising=False)
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(detect_ckpt, map_location="cpu", weights_only=False)
    ckpt["extra"] = _Payload(marker)
    evil = tmp_path / "evil.pt"
    torch.save(ckpt, evil)
    with pytest.raises(ModelError) as e:
        Detector(evil)
    one_line(e.value)
    assert "trust" in str(e.value).lower()
    assert not marker.exists()
    Detector(evil, trust=True)  # the user vouches for the file: it loads, payload and all
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Camera app


def camera(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = subprocess_env(**env)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run(
        [sys.executable, str(APP), *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=600
    )


def assert_camera_error(r: subprocess.CompletedProcess, *words: str, status: int) -> str:
    assert r.returncode == status, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines  # nothing was opened before the check, so nothing else was logged
    assert lines[0].startswith("camera: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def frames_of(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@pytest.fixture(scope="module")
def folder(detect_images, tmp_path_factory) -> Path:
    """Four readable images and, sorted between them, one that is not an image."""
    folder = tmp_path_factory.mktemp("frames")
    for i, name in enumerate(["a.jpg", "b.jpg", "d.jpg", "e.jpg"]):
        cv2.imwrite(str(folder / name), cv2.resize(cv2.imread(str(detect_images[i])), (128, 96)))
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_an_unreadable_image_in_a_folder_is_skipped_with_one_warning(detect_ckpt, folder, tmp_path):
    out = tmp_path / "out"
    r = camera("--model", str(detect_ckpt), "--source", str(folder), "--headless", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    warnings = [line for line in r.stderr.splitlines() if "skipping" in line]
    assert len(warnings) == 1 and str(folder / "c.jpg") in warnings[0], r.stderr
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [d["frame"] for d in lines] == [0, 1, 2, 3]
    assert frames_of(out / "annotated.mp4") == 4
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "detections.jsonl"]
    assert "camera: 4 frames" in r.stdout


@pytest.fixture(scope="module")
def long_video(detect_images, tmp_path_factory) -> Path:
    """A 3000-frame 64x48 video: long enough that a run is still going when it is signalled."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    small = [cv2.resize(cv2.imread(str(p)), (64, 48)) for p in detect_images[:8]]
    for i in range(3000):
        writer.write(small[i % len(small)])
    writer.release()
    return path


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 0)])
def test_a_signalled_run_keeps_every_frame_it_wrote_finalized(detect_ckpt, long_video, tmp_path, signum, status):
    out = tmp_path / "out"
    environ = subprocess_env()
    environ.pop("DISPLAY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(APP),
            "--model",
            str(detect_ckpt),
            "--source",
            str(long_video),
            "--headless",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=tmp_path,
    )
    partial = out / ".detections.partial.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == status, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert 3 <= len(lines) < 3000 and [d["frame"] for d in lines] == list(range(len(lines)))
    assert frames_of(out / "annotated.mp4") == len(lines)  # a finalized, readable video with every frame
    assert sorted(p.name for p in out.iterdir()) == ["annotated.mp4", "detections.jsonl"]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--conf", "5"], ["--conf 5:", "between 0 and 1"]),
        (["--conf", "-0.1"], ["--conf -0.1:"]),
        (["--iou", "1.5"], ["--iou 1.5:", "between 0 and 1"]),
        (["--conf", "nan"], ["--conf nan:"]),
        (["--imgsz", "0"], ["--imgsz 0:", "positive multiple"]),
        (["--imgsz", "-32"], ["--imgsz -32:", "positive multiple"]),
    ],
)
def test_out_of_range_arguments_stop_before_anything_is_opened(tmp_path, args, words):
    # Neither the model nor the source exists: the argument is refused before either is looked at.
    r = camera(
        "--model",
        str(tmp_path / "missing.onnx"),
        "--source",
        str(tmp_path / "missing.mp4"),
        "--headless",
        "--out",
        str(tmp_path / "o"),
        *args,
        cwd=tmp_path,
    )
    assert_camera_error(r, *words, status=2)
    assert not (tmp_path / "o").exists()


def test_imgsz_off_the_model_stride_is_one_line(detect_ckpt, folder, tmp_path):
    r = camera(
        "--model",
        str(detect_ckpt),
        "--source",
        str(folder),
        "--headless",
        "--out",
        str(tmp_path / "o"),
        "--imgsz",
        "100",
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("camera: error: imgsz=100: not a multiple of")
    assert "stride 32" in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "display,reason", [(None, "DISPLAY and WAYLAND_DISPLAY are unset"), (":87", "OpenCV cannot open a window")]
)
def test_without_a_display_the_app_warns_once_and_runs_headless(detect_ckpt, folder, tmp_path, display, reason):
    env = {"DISPLAY": display} if display else {}
    r = camera("--model", str(detect_ckpt), "--source", str(folder), "--max-frames", "2", cwd=tmp_path, **env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    warnings = [line for line in r.stderr.splitlines() if "running headless" in line]
    assert len(warnings) == 1 and reason in warnings[0] and "runs/camera" in warnings[0], r.stderr
    out = tmp_path / "runs" / "camera"
    assert len((out / "detections.jsonl").read_text().splitlines()) == 2
    assert frames_of(out / "annotated.mp4") == 2


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt" / "sub"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt"


def _read_only(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    return tmp_path / "ro" / "out"


@pytest.mark.parametrize("make", [_under_a_file, _a_file, _read_only])
def test_an_unwritable_out_is_one_line_before_the_model_loads(folder, tmp_path, make):
    out = make(tmp_path)
    try:
        # The model does not exist: the --out check comes first, before the model is opened.
        r = camera(
            "--model",
            str(tmp_path / "missing.pt"),
            "--source",
            str(folder),
            "--headless",
            "--out",
            str(out),
            cwd=tmp_path,
        )
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)
    assert_camera_error(r, f"--out {out}: not writable", "pass a folder you can write to", status=1)
    assert stray_temp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# Export adapters


def test_export_formats_hook_names_onnx_and_engine_only_with_tensorrt():
    import importlib
    import importlib.util

    from yoloslim_deploy import onnx_adapter, tensorrt_adapter

    assert onnx_adapter.yoloslim_export_formats() == ["onnx"]
    try:
        importlib.import_module("tensorrt")
        has_trt = True
    except Exception:
        has_trt = False
    assert tensorrt_adapter.yoloslim_export_formats() == (["engine", "tensorrt"] if has_trt else [])
    if importlib.util.find_spec("tensorrt") is None:
        assert tensorrt_adapter.yoloslim_export_formats() == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_work_folders_of_dead_exports_are_removed_and_live_ones_kept(tmp_path):
    from yoloslim_deploy.tempdirs import LEGACY_MAX_AGE_S, export_workdir

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead = tmp_path / f".export-{_dead_pid()}-x1"
        alive = tmp_path / f".export-{live.pid}-x2"
        old_legacy, new_legacy = tmp_path / ".export-oldname", tmp_path / ".export-newname"
        other = tmp_path / f".engine-{_dead_pid()}-x3"  # another adapter's prefix: not this call's business
        for d in (dead, alive, old_legacy, new_legacy, other):
            d.mkdir()
            (d / "model.onnx").write_bytes(b"partial")
        stamp = time.time() - LEGACY_MAX_AGE_S - 60
        os.utime(old_legacy, (stamp, stamp))
        with export_workdir(tmp_path, ".export-") as work:
            assert Path(work).name.startswith(f".export-{os.getpid()}-")
            assert not dead.exists() and not old_legacy.exists()
            assert alive.is_dir() and new_legacy.is_dir() and other.is_dir()
        assert not Path(work).exists()
    finally:
        live.kill()
        live.wait()


def test_an_onnx_export_removes_a_killed_exports_folder_but_not_a_running_ones(detect_ckpt, tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        dead = tmp_path / f".export-{_dead_pid()}-abcd"
        alive = tmp_path / f".export-{live.pid}-efgh"
        for d in (dead, alive):
            d.mkdir()
            (d / "detect.pt").write_bytes(b"half a copy")
        out = SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", tmp_path / "m.onnx", parity=False)
        assert out.is_file() and out.stat().st_size > 0
        assert not dead.exists() and alive.is_dir()
        assert stray_temp_files(tmp_path) == [alive]
    finally:
        live.kill()
        live.wait()


def test_handled_signals_raise_an_interrupt_that_the_block_swallowed():
    from yoloslim import signals

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), signals.handled():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        except BaseException:  # what Ultralytics' TryExcept does
            pass
    assert signal.getsignal(signal.SIGINT) is before
    assert signals.received() is None  # cleared once the outermost block ended
    with signals.handled():  # no signal: nothing raised
        pass


def test_a_sigint_swallowed_inside_ultralytics_export_still_interrupts_it(detect_ckpt, tmp_path, monkeypatch):
    from ultralytics.engine import exporter
    from ultralytics.utils import TryExcept

    calls = []

    @TryExcept()  # as Ultralytics wraps its own check_requirements
    def check_requirements(*args, **kwargs):
        calls.append(args)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)

    monkeypatch.setattr(exporter, "check_requirements", check_requirements)
    out = tmp_path / "m.onnx"
    with pytest.raises(KeyboardInterrupt):
        SlimContext(imgsz=DETECT_IMGSZ).export(detect_ckpt, "onnx", out, parity=False)
    assert calls, "the exporter no longer calls check_requirements; the test does not simulate anything"
    assert not out.exists()
    assert stray_temp_files(tmp_path) == []
