"""Camera app: run a yoloslim/Ultralytics detector on a live or recorded stream and draw what it finds.

    python deploy/apps/camera.py --model best.onnx --source 0                  # webcam 0, in a window
    python deploy/apps/camera.py --model best.engine --source rtsp://cam/stream
    python deploy/apps/camera.py --model best.onnx --source clip.mp4 --headless --out runs/camera

``--source`` is a webcam index, a video file, a folder of images (sorted by name), one image, or a stream URL
(``rtsp://``, ``http://``). Boxes, labels and the processing FPS are drawn on every frame. In a window, ``q`` or
Esc ends the run; ``--headless`` shows nothing and writes ``annotated.mp4`` and ``detections.jsonl`` (one JSON
object per frame) into ``--out``, which a window run also does when ``--out`` is given. The run ends cleanly at
the end of the stream; a source that cannot be opened ends it at once with one line and exit status 2.

Either output layout runs: the usual ``(batch, 4 + classes, anchors)`` with NMS after the model, and YOLO26's
NMS-free end-to-end ``(batch, k, 6)`` (an export with ``nms=False``; for a ``.pt`` checkpoint, ``--end2end``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
LOGGER = logging.getLogger("yoloslim.camera")


class SourceError(Exception):
    """The source cannot be opened or read."""


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
                raise SourceError(f"source '{spec}': folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                  "pass a folder of images, a video file, a webcam index or a stream URL")
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            self.images = [path]
        elif path.is_file():
            self.capture = cv2.VideoCapture(str(path))
        else:
            raise SourceError(f"source '{spec}': no such file or folder; pass a video file, an image folder, "
                              "a webcam index (0) or a stream URL (rtsp://...)")
        if self.capture is not None and not self.capture.isOpened():
            raise SourceError(f"source '{spec}': OpenCV cannot open it; check the device index, the URL or the "
                              "video codec")
        fps = self.capture.get(cv2.CAP_PROP_FPS) if self.capture is not None else 0
        self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.images is not None:
            for p in self.images[self.start:]:
                frame = cv2.imread(str(p))
                if frame is None:
                    raise SourceError(f"source '{self.name}': cannot read image '{p}'; replace or remove it")
                yield frame
            return
        try:
            if self.start:  # seek; a stream that cannot seek reads and drops the frames instead
                if not self.capture.set(cv2.CAP_PROP_POS_FRAMES, self.start):
                    for _ in range(self.start):
                        if not self.capture.read()[0]:
                            return
            while True:
                ok, frame = self.capture.read()
                if not ok:
                    return
                yield frame
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


def run(args: argparse.Namespace) -> int:
    """Run the app; returns the exit status.

    Outputs are written under temporary names and renamed when the stream ends (end of file, ``q``, Ctrl-C or
    ``--max-frames``); an error on the way removes them.
    """
    from yoloslim_deploy import Detector

    if args.start_frame < 0:
        raise SourceError(f"--start-frame {args.start_frame}: pass a frame index >= 0")
    source = Source(args.source, args.start_frame)  # a bad source fails before the model loads
    detector = Detector(args.model, device=args.device, conf=args.conf, iou=args.iou,
                        end2end=True if args.end2end else None)
    out_dir = Path(args.out) if args.out else (Path("runs/camera") if args.headless else None)
    writer = None
    jsonl = None
    partial: list[Path] = []
    size = (0, 0)
    frames = 0
    fps = 0.0
    busy = 0.0  # seconds spent in the detector (preprocess, inference, decode)
    done = False
    try:
        try:
            for frame in source:
                start = time.perf_counter()
                detections = detector(frame)
                elapsed = max(time.perf_counter() - start, 1e-9)
                busy += elapsed
                fps = 1.0 / elapsed if frames == 0 else 0.9 * fps + 0.1 / elapsed
                annotated = draw(frame, detections, fps)
                if out_dir is not None:
                    if writer is None:
                        out_dir.mkdir(parents=True, exist_ok=True)
                        partial = [out_dir / ".annotated.partial.mp4", out_dir / ".detections.partial.jsonl"]
                        size = (annotated.shape[1], annotated.shape[0])
                        writer = cv2.VideoWriter(str(partial[0]), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, size)
                        jsonl = open(partial[1], "w", encoding="utf-8")
                    # An image folder may mix sizes; the video keeps the first frame's.
                    writer.write(annotated if annotated.shape[1::-1] == size else cv2.resize(annotated, size))
                    jsonl.write(json.dumps({"frame": frames, "shape": list(frame.shape[:2]),
                                            "detections": detections.to_list()}) + "\n")
                frames += 1
                if not args.headless:
                    cv2.imshow("yoloslim camera", annotated)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if args.max_frames and frames >= args.max_frames:
                    break
        except KeyboardInterrupt:  # the usual way to stop a live source: keep what was recorded
            LOGGER.info("interrupted after %d frames", frames)
        done = True
    finally:
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
        if not args.headless:
            cv2.destroyAllWindows()
        if not done:
            for path in partial:
                path.unlink(missing_ok=True)
    if out_dir is not None and partial:
        os.replace(partial[0], out_dir / "annotated.mp4")
        os.replace(partial[1], out_dir / "detections.jsonl")
    speed = f", detector {1000 * busy / frames:.1f} ms/frame ({frames / busy:.1f} FPS)" if frames else ""
    print(f"camera: {frames} frames{speed}" + (f", output in {out_dir}" if out_dir is not None and partial else ""))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="camera", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help=".pt, .onnx or .engine model file")
    p.add_argument("--source", required=True, help="webcam index, video file, image folder, image or stream URL")
    p.add_argument("--headless", action="store_true", help="no window; write annotated.mp4 and detections.jsonl")
    p.add_argument("--out", help="output folder (default runs/camera when --headless)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.7,
                   help="NMS IoU threshold (default 0.7; an NMS-free end-to-end model needs none)")
    p.add_argument("--end2end", action="store_true",
                   help="for a .pt YOLO26 checkpoint, run its NMS-free one-to-one head (an export has its own layout)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (default: the whole stream)")
    p.add_argument("--start-frame", type=int, default=0, help="skip the first N frames of a video or image folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and a non-zero exit on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    from yoloslim.errors import YoloslimError

    try:
        return run(args)
    except SourceError as e:
        print(f"camera: error: {e}", file=sys.stderr)
        return 2
    except YoloslimError as e:
        print(f"camera: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
