"""Camera app: run a yoloslim/Ultralytics detector on a live or recorded stream and draw what it finds.

    python deploy/apps/camera.py --model best.onnx --source 0                  # webcam 0, in a window
    python deploy/apps/camera.py --model best.engine --source rtsp://cam/stream
    python deploy/apps/camera.py --model best.onnx --source clip.mp4 --headless --out runs/camera

``--source`` is a webcam index, a video file, a folder of images (sorted by name), one image, or a stream URL
(``rtsp://``, ``http://``). Boxes, labels and the processing FPS are drawn on every frame. In a window, ``q`` or
Esc ends the run; ``--headless`` shows nothing and writes ``annotated.mp4`` and ``detections.jsonl`` (one JSON
object per frame) into ``--out``, which a window run also does when ``--out`` is given. The run ends cleanly at
the end of the stream; a source that cannot be opened ends it at once with one line and exit status 2.

Bad input ends the run before anything is opened, with one line: ``--conf``/``--iou`` outside ``[0, 1]``,
``--imgsz`` not positive (status 2), an ``--out`` that is not a writable folder (status 1; checked before the model
loads), an ``--imgsz`` that is not a multiple of the model's stride (status 1, once the model is open). During the
run, an image of a folder that cannot be read, or a frame that cannot be decoded, is skipped with one warning.
Without a display (no ``DISPLAY``/``WAYLAND_DISPLAY`` on Linux, or a GUI backend that fails to open a window) the
app warns once and runs headless, writing into ``--out`` (default ``runs/camera``).

What was written is kept: the outputs are written under temporary names (``.annotated.partial.mp4``,
``.detections.partial.jsonl``, one line flushed per frame) and, whatever ends the run (end of stream, ``q``,
``--max-frames``, Ctrl-C, SIGTERM, an error), the video is finalized and both are renamed to ``annotated.mp4`` and
``detections.jsonl``. Only a run killed outright (SIGKILL) leaves the ``.partial`` files (the JSON lines complete
up to the last frame, the video without its index); the next run into the same folder replaces them.

Either output layout runs: the usual ``(batch, 4 + classes, anchors)`` with NMS after the model, and YOLO26's
NMS-free end-to-end ``(batch, k, 6)`` (an export with ``nms=False``; for a ``.pt`` checkpoint, ``--end2end``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

MAX_BAD_FRAMES = 25  # a video whose frames fail this many times in a row is treated as ended
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
LOGGER = logging.getLogger("yoloslim.camera")


class SourceError(Exception):
    """The source cannot be opened or read, or an argument is out of range (exit status 2)."""


class OutputError(Exception):
    """The output folder cannot be written (exit status 1)."""


class Source:
    """Frames from a webcam, video file, stream URL, image folder or single image.

    Attributes:
        fps: Frame rate of the source (30 when it does not say).
        name: The source as given.
    """

    def __init__(self, spec: str, start: int = 0):
        self.name = spec
        self.start = start
        self.images: list[Path] | None = None
        self.capture: Any = None
        path = Path(spec)
        if spec.isdigit():
            self.capture = cv2.VideoCapture(int(spec))
        elif "://" in spec:
            self.capture = cv2.VideoCapture(spec)
        elif path.is_dir():
            self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.images:
                raise SourceError(
                    f"source '{spec}': folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "pass a folder of images, a video file, a webcam index or a stream URL"
                )
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            self.images = [path]
        elif path.is_file():
            self.capture = cv2.VideoCapture(str(path))
        else:
            raise SourceError(
                f"source '{spec}': no such file or folder; pass a video file, an image folder, "
                "a webcam index (0) or a stream URL (rtsp://...)"
            )
        if self.capture is not None and not self.capture.isOpened():
            raise SourceError(
                f"source '{spec}': OpenCV cannot open it; check the device index, the URL or the video codec"
            )
        fps = self.capture.get(cv2.CAP_PROP_FPS) if self.capture is not None else 0
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames, in order; an image that cannot be read or a frame that cannot be decoded is skipped with a
        warning (a video file's unreadable frame is passed over while frames remain)."""
        if self.images is not None:
            for p in self.images[self.start :]:
                frame = cv2.imread(str(p))
                if frame is None or frame.size == 0:
                    LOGGER.warning("skipping '%s': OpenCV cannot read it as an image", p)
                    continue
                yield frame
            return
        try:
            # Seek; a stream that cannot seek reads and drops the frames instead.
            if self.start and not self.capture.set(cv2.CAP_PROP_POS_FRAMES, self.start):
                for _ in range(self.start):
                    if not self.capture.read()[0]:
                        return
            total = self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0  # 0 (or -1) for a live source
            bad = 0  # bad frames in a row
            while True:
                ok, frame = self.capture.read()
                if ok and frame is not None and frame.size:
                    bad = 0
                    yield frame
                    continue
                position = self.capture.get(cv2.CAP_PROP_POS_FRAMES) or 0
                if not ok and not 0 < position < total - 1:  # the end of a file, or a live source that stopped
                    return
                bad += 1
                if bad > MAX_BAD_FRAMES:
                    LOGGER.warning("'%s': %d frames in a row cannot be decoded; ending the run", self.name, bad)
                    return
                LOGGER.warning("skipping frame %d of '%s': it cannot be decoded", int(position), self.name)
                if not ok and not self.capture.grab():  # step past the frame that failed
                    return
        finally:
            self.capture.release()


def color(cls: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (cls * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw(frame: np.ndarray, detections: Any, fps: float) -> np.ndarray:
    """Draw boxes, labels with confidences, and the FPS on a copy of ``frame``."""
    out = frame.copy()
    scale = max(0.35, min(out.shape[:2]) / 800)
    thick = max(1, round(scale * 2))
    for box, conf, cls, label in zip(detections.xyxy, detections.conf, detections.cls, detections.labels):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        c = color(int(cls))
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thick)
        cv2.putText(out, f"{label} {conf:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale, c, thick)
    cv2.putText(out, f"{fps:.1f} FPS", (5, int(20 * scale + 5)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thick)
    return out


def display_problem() -> str | None:
    """Why no window can be shown here, or ``None`` when one can.

    On Linux, ``DISPLAY`` or ``WAYLAND_DISPLAY`` must be set. OpenCV's Qt backend aborts the whole process when it
    cannot reach the display (no exception to catch), so a window is first opened in a child process.
    """
    import subprocess

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "DISPLAY and WAYLAND_DISPLAY are unset"
    probe = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the GUI check failed: {type(e).__name__}"
    if r.returncode != 0:
        lines = [line.strip() for line in r.stderr.splitlines() if line.strip()]
        return f"OpenCV cannot open a window ({lines[0][:200] if lines else f'exit status {r.returncode}'})"
    return None


def check_out_dir(out: Path) -> None:
    """Check, creating nothing, that ``out`` is a folder this process can write, or can create.

    Raises:
        OutputError: Naming ``out`` and what is in the way.
    """
    existing = out
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link cannot become a folder
            raise OutputError(
                f"--out {out}: not writable ({existing} is a broken link); pass a folder you can write to"
            )
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"--out {out}: not writable ({existing} is a file, not a folder); pass a folder you can write to"
        )
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".camera-check-"):
            pass
    except OSError as e:
        raise OutputError(
            f"--out {out}: not writable ({existing}: {e.strerror or type(e).__name__}); pass a folder you can write to"
        ) from e


class Outputs:
    """``annotated.mp4`` and ``detections.jsonl`` in ``folder``: written under ``.partial`` names, renamed on close."""

    def __init__(self, folder: Path, fps: float):
        self.folder = folder
        self.fps = fps
        self.writer: Any = None
        self.jsonl: Any = None
        self.size = (0, 0)
        self.partial = [folder / ".annotated.partial.mp4", folder / ".detections.partial.jsonl"]
        self.final = [folder / "annotated.mp4", folder / "detections.jsonl"]
        self.closed = False  # True once something was written and renamed into place

    def write(self, index: int, frame: np.ndarray, annotated: np.ndarray, detections: Any) -> None:
        """Append one annotated frame and its JSON line (flushed, so a killed run keeps complete lines)."""
        if self.writer is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.jsonl = open(self.partial[1], "w", encoding="utf-8")  # noqa: SIM115 - open until close()
            except OSError as e:
                raise OutputError(
                    f"--out {self.folder}: not writable ({e.strerror or type(e).__name__}); pass a "
                    "folder you can write to"
                ) from e
            self.size = (annotated.shape[1], annotated.shape[0])
            self.writer = cv2.VideoWriter(str(self.partial[0]), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        # An image folder may mix sizes; the video keeps the first frame's.
        self.writer.write(annotated if annotated.shape[1::-1] == self.size else cv2.resize(annotated, self.size))
        try:
            self.jsonl.write(
                json.dumps({"frame": index, "shape": list(frame.shape[:2]), "detections": detections.to_list()}) + "\n"
            )
            self.jsonl.flush()
        except OSError as e:  # disk full, a removed folder: stop, keeping the frames written so far
            raise OutputError(
                f"--out {self.folder}: writing frame {index} failed ({e.strerror or type(e).__name__}); "
                "free some space or pass another folder"
            ) from e

    def close(self) -> None:
        """Finalize the video and rename both files into place; what was written is never removed."""
        if self.writer is None:
            return
        self.writer.release()
        with contextlib.suppress(OSError):  # a full disk: the error that stopped the run is the one reported
            self.jsonl.close()
        for partial, final in zip(self.partial, self.final):
            if partial.exists():
                os.replace(partial, final)
        self.writer = None
        self.closed = True


def run(args: argparse.Namespace) -> int:
    """Run the app; returns the exit status.

    Every argument and the output folder are checked before the source or the model is opened. Outputs are
    written under temporary names and, however the run ends, finalized and renamed into place (see the module's
    docstring); nothing already written is removed.
    """
    for name in ("conf", "iou"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise SourceError(f"--{name} {value:g}: pass a threshold between 0 and 1")
    if args.imgsz is not None and args.imgsz <= 0:
        raise SourceError(
            f"--imgsz {args.imgsz}: pass a positive multiple of the model's stride (e.g. 640), or "
            "leave it out for the model's own size"
        )
    if args.start_frame < 0:
        raise SourceError(f"--start-frame {args.start_frame}: pass a frame index >= 0")
    headless = args.headless
    problem = None if headless else display_problem()
    if problem:
        LOGGER.warning("no display (%s): running headless, output in %s", problem, args.out or "runs/camera")
        headless = True
    out_dir = Path(args.out) if args.out else (Path("runs/camera") if headless else None)
    if out_dir is not None:
        check_out_dir(out_dir)
    source = Source(args.source, args.start_frame)  # a bad source fails before the model loads

    from yoloslim_deploy import Detector

    detector = Detector(
        args.model,
        device=args.device,
        conf=args.conf,
        iou=args.iou,
        imgsz=args.imgsz,
        end2end=True if args.end2end else None,
        trust=True if args.trust_checkpoint else None,
    )
    if not headless:
        try:
            cv2.namedWindow("yoloslim camera")
        except cv2.error as e:  # OpenCV built without a GUI, or a GUI backend that cannot start
            LOGGER.warning(
                "cannot open a window (%s): running headless, output in %s",
                str(e).strip().splitlines()[-1] if str(e).strip() else "GUI error",
                out_dir or "runs/camera",
            )
            headless = True
            if out_dir is None:
                out_dir = Path("runs/camera")
                check_out_dir(out_dir)
    outputs = Outputs(out_dir, source.fps) if out_dir is not None else None
    frames = 0
    fps = 0.0
    busy = 0.0  # seconds spent in the detector (preprocess, inference, decode)
    status = 0
    from yoloslim import DataError, signals

    try:
        try:
            for frame in source:
                signals.check()  # a Ctrl-C or SIGTERM that a library caught and dropped still ends the loop
                start = time.perf_counter()
                try:
                    detections = detector(frame)
                except DataError as e:  # a frame the detector cannot take: skip it, as an unreadable one
                    LOGGER.warning("skipping frame %d: %s", frames, e)
                    continue
                elapsed = max(time.perf_counter() - start, 1e-9)
                busy += elapsed
                fps = 1.0 / elapsed if frames == 0 else 0.9 * fps + 0.1 / elapsed
                annotated = draw(frame, detections, fps)
                if outputs is not None:
                    outputs.write(frames, frame, annotated, detections)
                frames += 1
                if not headless:
                    cv2.imshow("yoloslim camera", annotated)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if args.max_frames and frames >= args.max_frames:
                    break
        except KeyboardInterrupt as e:  # the usual way to stop a live source: keep what was recorded
            terminated = signals.signum_of(e) == signal.SIGTERM
            LOGGER.info("%s after %d frames", "terminated" if terminated else "interrupted", frames)
            status = 143 if terminated else 0
    finally:  # on an error too: what was written stays, finalized, under its final name
        if outputs is not None:
            outputs.close()
        if not headless:
            cv2.destroyAllWindows()
    written = outputs is not None and outputs.closed
    speed = f", detector {1000 * busy / frames:.1f} ms/frame ({frames / busy:.1f} FPS)" if frames else ""
    print(f"camera: {frames} frames{speed}" + (f", output in {out_dir}" if written else ""))
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="camera", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help=".pt, .onnx or .engine model file")
    p.add_argument("--source", required=True, help="webcam index, video file, image folder, image or stream URL")
    p.add_argument("--headless", action="store_true", help="no window; write annotated.mp4 and detections.jsonl")
    p.add_argument("--out", help="output folder (default runs/camera when --headless)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument(
        "--iou",
        type=float,
        default=0.7,
        help="NMS IoU threshold (default 0.7; an NMS-free end-to-end model needs none)",
    )
    p.add_argument(
        "--imgsz",
        type=int,
        default=None,
        help="square input size, a multiple of the model's stride (default: the model's own)",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load a .pt checkpoint without the safe-load allowlist (only a file you trust)",
    )
    p.add_argument(
        "--end2end",
        action="store_true",
        help="for a .pt YOLO26 checkpoint, run its NMS-free one-to-one head (an export has its own layout)",
    )
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (default: the whole stream)")
    p.add_argument("--start-frame", type=int, default=0, help="skip the first N frames of a video or image folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and a non-zero exit on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    from yoloslim import YoloslimError, handled_signals, signals

    # SIGINT and SIGTERM raise KeyboardInterrupt and are recorded, so the frame loop stops at the next frame even if
    # a library swallowed the exception (yoloslim.signals); outside the main thread this only runs the app.
    with handled_signals(reraise=False):
        try:
            return run(args)
        except SourceError as e:
            print(f"camera: error: {e}", file=sys.stderr)
            return 2
        except (YoloslimError, OutputError) as e:
            print(f"camera: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:  # before or after the frame loop (loading the model, opening the source)
            return signals.exit_status(signals.signum_of(e))  # 130 for SIGINT, 143 for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
