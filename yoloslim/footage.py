"""Label-free data: footage (a video or a folder of images) turned into a dataset the original model labels itself.

Users of camera apps have footage, not labels. Given a video or an image folder where a dataset YAML is expected,
yoloslim samples frames, lets the original (FP32) model detect on them, and writes a YOLO dataset:

- ``train``: the first 90 % of the sampled frames, each with the original's confident detections as its labels
  (pseudo-labels, ``conf`` >= ``pseudo_conf``);
- ``val``: the last 10 % (at least one frame), pseudo-labelled the same way, so training's validation and best.pt
  selection measure how well a model reproduces the original on frames it did not train on;
- ``test``: the same frames without labels, so the report scores every model by its *agreement* with the FP32
  original (mAP50-95 and F1@0.5 against the original's detections) and says so, never "accuracy".

The frames are held out in time (the last part of the sampled range), not interleaved: neighbouring video frames
are near copies, and interleaving them would let a model pass validation by memorising its training frames.

Datasets are cached under ``runs/pseudo/<key>/`` where the key hashes the footage (path, size, modification time of
every file), the model file, the image size and every sampling and labelling option: the same call reuses the
frames and pseudo-labels instead of running the model again. A cache is written to a temporary folder and renamed
into place, so an interrupted run leaves none half-made.

Soft targets (class scores, box distributions, features) come from the distill stage with ``teacher: original``;
this module only makes the hard pseudo-labels every detection loss needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yoloslim.errors import DataError
from yoloslim.files import sha256_file

LOGGER = logging.getLogger("yoloslim.footage")

CACHE_ROOT = Path("runs/pseudo")
_VERSION = 1  # bump when the dataset layout changes, so old caches are not reused


@dataclass(frozen=True)
class FootageOptions:
    """How frames are sampled and pseudo-labelled.

    Attributes:
        frames: Frames sampled, evenly spaced over the range (a folder: over its sorted images).
        first: First frame (video) or image (folder) of the range, 0-based.
        last: Frame or image after the range's end (exclusive); ``None`` for the end.
        pseudo_conf: Confidence a detection of the original needs to become a pseudo-label.
        iou: NMS IoU of the original's detections.
        val_fraction: Share of the sampled frames, taken from the end of the range, held out for validation.
    """

    frames: int = 200
    first: int = 0
    last: int | None = None
    pseudo_conf: float = 0.25
    iou: float = 0.7
    val_fraction: float = 0.1


def is_footage(data: str | Path) -> bool:
    """Whether ``data`` names footage (a video file or a folder) rather than a dataset YAML."""
    from ultralytics.data.utils import VID_FORMATS

    p = Path(data)
    return p.is_dir() or p.suffix.lower().lstrip(".") in VID_FORMATS


def check_footage_options(opts: FootageOptions) -> None:
    """Raise DataError for an option that cannot select or label frames."""
    if opts.frames < 2:
        raise DataError(f"--frames {opts.frames}: label-free data needs at least 2 frames (train and val); pass more")
    if opts.first < 0 or (opts.last is not None and opts.last <= opts.first):
        raise DataError(f"--frame-range {opts.first}:{opts.last}: expected 0 <= START < END (frame indices)")
    if not 0.0 < opts.pseudo_conf < 1.0:
        raise DataError(f"--pseudo-conf {opts.pseudo_conf}: expected a confidence in (0, 1), e.g. 0.25")


def _image_files(folder: Path) -> list[Path]:
    from ultralytics.data.utils import IMG_FORMATS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMG_FORMATS)


def _footage_identity(source: Path) -> list[Any]:
    files = _image_files(source) if source.is_dir() else [source]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def cache_key(source: Path, model: Path, imgsz: int, opts: FootageOptions) -> str:
    """The cache folder name of a pseudo-labelled dataset: everything that changes its frames or labels."""
    spec = {
        "version": _VERSION,
        "footage": _footage_identity(source),
        "model": sha256_file(model),
        "imgsz": imgsz,
        "options": asdict(opts),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _selected(count: int, opts: FootageOptions) -> list[int]:
    """Indices of the frames to keep, evenly spaced over ``[first, last)`` of ``count`` frames."""
    end = count if opts.last is None else min(opts.last, count)
    if end - opts.first < 2:
        raise DataError(
            f"--frame-range {opts.first}:{opts.last}: the footage has {count} frames, so the range holds "
            f"{max(0, end - opts.first)}; label-free data needs at least 2"
        )
    return sorted({int(round(i)) for i in np.linspace(opts.first, end - 1, min(opts.frames, end - opts.first))})


def read_frames(source: str | Path, opts: FootageOptions) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, BGR frame)`` of the selected frames of a video or an image folder.

    Raises:
        DataError: When the source does not exist, cannot be read as a video, or holds no readable image.
    """
    import cv2

    source = Path(source)
    if not source.exists():
        raise DataError(f"footage '{source}' not found; pass a video file or a folder of images")
    if source.is_dir():
        files = _image_files(source)
        if not files:
            raise DataError(f"footage folder '{source}' holds no images; pass a folder of .jpg/.png images or a video")
        for i in _selected(len(files), opts):
            frame = cv2.imread(str(files[i]))
            if frame is None:
                LOGGER.warning("skipping '%s': OpenCV cannot read it as an image", files[i])
                continue
            yield i, frame
        return
    capture = cv2.VideoCapture(str(source))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
        ok, first = capture.read() if capture.isOpened() else (False, None)
        if not ok or first is None or count <= 0:
            raise DataError(
                f"footage '{source}' cannot be read as a video (OpenCV decodes no frames from it); pass a "
                "video OpenCV reads (mp4, avi, mkv, ...) or a folder of images"
            )
        wanted = set(_selected(count, opts))
        index, frame = 0, first
        while frame is not None and index <= max(wanted):
            if index in wanted:
                yield index, frame
            ok, frame = capture.read()
            frame = frame if ok else None
            index += 1
    finally:
        capture.release()


def pseudo_labelled_dataset(
    source: str | Path,
    model: str | Path,
    imgsz: int,
    opts: FootageOptions | None = None,
    cache_root: str | Path | None = None,
) -> Path:
    """Return the ``data.yaml`` of ``source``'s sampled frames labelled by ``model`` (cached; see the module).

    Args:
        source: A video file or a folder of images.
        model: The original checkpoint (``.pt``); its confident detections become the labels.
        imgsz: Image size the model detects at (the run's).
        opts: Frame sampling and labelling options.
        cache_root: Where cached datasets live (default ``runs/pseudo``).

    Raises:
        DataError: For unreadable footage or options that select too few frames.
    """
    opts = opts or FootageOptions()
    check_footage_options(opts)
    source, model = Path(source), Path(model)
    root = Path(cache_root) if cache_root is not None else CACHE_ROOT
    if not source.exists():
        raise DataError(f"footage '{source}' not found; pass a video file or a folder of images")
    out = root / cache_key(source, model, imgsz, opts)
    if (out / "data.yaml").is_file():
        LOGGER.info("label-free data: reusing the frames and pseudo-labels in %s", out)
        return (out / "data.yaml").resolve()
    tmp = root / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        stats = _build(source, model, imgsz, opts, tmp)
        (tmp / "data.yaml").write_text(
            yaml.safe_dump(
                {
                    "path": str(out.resolve()),
                    "train": "images/train",
                    "val": "images/val",
                    "test": "images/test",
                    "names": stats.pop("names"),
                },
                sort_keys=False,
            ),
            encoding="utf-8",
        )
        (tmp / "footage.json").write_text(
            json.dumps(
                {
                    "source": str(source.resolve()),
                    "model": str(model.resolve()),
                    "imgsz": imgsz,
                    "options": asdict(opts),
                    **stats,
                },
                indent=2,
            )
        )
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOGGER.info(
        "label-free data: %d train / %d val frames from %s, %d pseudo-labels (conf >= %.2f) by %s -> %s",
        stats["train_frames"],
        stats["val_frames"],
        source,
        stats["labels"],
        opts.pseudo_conf,
        model.name,
        out,
    )
    return (out / "data.yaml").resolve()


def _build(source: Path, model: Path, imgsz: int, opts: FootageOptions, out: Path) -> dict[str, Any]:
    """Sample, label and write the frames into ``out`` (images/labels of train and val, images of test)."""
    import cv2
    from ultralytics import YOLO

    frames = list(read_frames(source, opts))
    if len(frames) < 2:
        raise DataError(
            f"footage '{source}': only {len(frames)} readable frame(s) in the range; label-free data needs at least 2"
        )
    n_val = max(1, int(round(len(frames) * opts.val_fraction)))
    splits = {"train": frames[:-n_val], "val": frames[-n_val:]}
    detector = YOLO(str(model), task="detect")
    names = [detector.names[i] for i in sorted(detector.names)]
    labels = 0
    for split, items in splits.items():
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for (index, frame), result in zip(items, _predict(detector, [f for _, f in items], imgsz, opts)):
            stem = f"frame_{index:06d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), frame)
            lines = _label_lines(result)
            labels += len(lines)
            (out / "labels" / split / f"{stem}.txt").write_text("".join(lines))
    shutil.copytree(out / "images" / "val", out / "images" / "test")  # no labels/test: scored by agreement
    return {
        "names": names,
        "train_frames": len(splits["train"]),
        "val_frames": len(splits["val"]),
        "labels": labels,
        "frame_indices": [i for i, _ in frames],
    }


def _predict(detector: Any, frames: Sequence[np.ndarray], imgsz: int, opts: FootageOptions) -> Iterator[Any]:
    for start in range(0, len(frames), 16):
        yield from detector.predict(
            list(frames[start : start + 16]),
            imgsz=imgsz,
            conf=opts.pseudo_conf,
            iou=opts.iou,
            device="cpu",
            verbose=False,
        )


def _label_lines(result: Any) -> list[str]:
    """YOLO label lines (``class x y w h``, normalized) of one prediction's boxes."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    xywhn = boxes.xywhn.cpu().numpy().clip(0.0, 1.0)
    classes = boxes.cls.cpu().numpy().astype(int)
    return [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, (x, y, w, h) in zip(classes, xywhn) if w > 0 and h > 0]
