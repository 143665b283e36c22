"""Deterministic generator of a synthetic YOLO detection dataset that is hard enough for compression
to show its cost.

Eight classes differ in shape and texture (filled, striped, hollow), never in colour: every instance
gets random colours. Objects range from a few pixels to a third of the image, overlap and occlude
each other, sit on textured backgrounds (grain, stripes, blurred blobs) and share the image with
unlabelled distractors (lines, zigzags, arcs, elongated ellipses, amoeba blobs). Each label is the
box of the object's *visible* pixels, clipped to the image.

The same seed gives byte-identical files: every image is drawn from its own
``numpy.random.Generator`` seeded by ``(seed, split, index)``, so any image can also be re-rendered
alone with :func:`render_sample` (the tests do this to check labels against the drawn pixels).

Usage (``--out`` defaults to ``datasets/generated/<variant>`` under the current folder)::

    python -m yoloslim.testing.synth_shapes --variant full --out datasets/generated/full

or from Python::

    from yoloslim.testing.synth_shapes import generate

    data_yaml = generate("datasets/generated/tiny", variant="tiny", seed=0)

The module needs only numpy and OpenCV (no pytest, no Ultralytics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

LOGGER = logging.getLogger("yoloslim.testing.synth_shapes")

#: Bump when the drawing code changes, so old datasets on disk are regenerated.
GENERATOR_VERSION = 2

CLASS_NAMES = (
    "disc",
    "ring",
    "striped_square",
    "hollow_square",
    "triangle",
    "hollow_triangle",
    "star",
    "cross",
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VariantSpec:
    """Sizes and difficulty knobs of one dataset variant."""

    imgsz: int
    split_sizes: dict[str, int]
    objects: tuple[int, int]  # labelled objects per image, inclusive range
    distractors: tuple[int, int]  # unlabelled clutter per image, inclusive range
    object_px: tuple[float, float]  # object size range in pixels (log-uniform)
    min_visible: float = 0.5  # an object keeps at least this share of its pixels visible


VARIANTS: dict[str, VariantSpec] = {
    "full": VariantSpec(
        imgsz=256,
        split_sizes={"train": 600, "val": 150, "test": 200},
        objects=(3, 10),
        distractors=(3, 10),
        object_px=(7.0, 90.0),
    ),
    "tiny": VariantSpec(
        imgsz=80,
        split_sizes={"train": 32, "val": 16, "test": 16},
        objects=(2, 5),
        distractors=(1, 4),
        object_px=(6.0, 32.0),
    ),
}


@dataclass
class Instance:
    """One labelled object: class, visible box (pixels, inclusive) and visible mask."""

    cls: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive, inside the image
    mask: np.ndarray = field(repr=False)  # bool HxW, the object's visible pixels


@dataclass
class Sample:
    """A rendered image, the same image without objects or clutter, and its labels."""

    image: np.ndarray  # uint8 HxWx3 (BGR), before encoding
    background: np.ndarray  # uint8 HxWx3, same noise and blur but no objects or distractors
    instances: list[Instance]

    def yolo_lines(self) -> list[str]:
        """Labels in YOLO format: ``cls xc yc w h`` normalised to the image size."""
        h, w = self.image.shape[:2]
        lines = []
        for inst in self.instances:
            x0, y0, x1, y1 = inst.box
            xc, yc = (x0 + x1 + 1) / 2 / w, (y0 + y1 + 1) / 2 / h
            bw, bh = (x1 - x0 + 1) / w, (y1 - y0 + 1) / h
            lines.append(f"{inst.cls} {xc:.6f} {yc:.6f} {bw:.6f} {bh:.6f}")
        return lines


# --------------------------------------------------------------------------------------- drawing


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: grain, stripes or blurred blobs, sometimes two blended."""

    def grain() -> np.ndarray:
        base = _random_colour(rng)
        noise = rng.normal(0.0, rng.uniform(10, 35), size=(size, size, 3)).astype(np.float32)
        sigma = rng.uniform(0.0, 2.0)
        if sigma > 0.5:
            noise = cv2.GaussianBlur(noise, (0, 0), sigma) * 1.8
        return base + noise

    def stripes() -> np.ndarray:
        c1, c2 = _random_colour(rng), _random_colour(rng)
        period = rng.uniform(3, size / 6)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
        wave = np.sin(phase)
        t = (wave > 0).astype(np.float32) if rng.random() < 0.5 else (wave + 1) / 2
        return c1 * t[..., None] + c2 * (1 - t[..., None])

    def blobs() -> np.ndarray:
        img = np.empty((size, size, 3), np.uint8)
        img[:] = rng.integers(0, 256, size=3).astype(np.uint8)
        for _ in range(int(rng.integers(15, 45))):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.integers(2, size // 4)), int(rng.integers(2, size // 4)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        return cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(2, 8))

    makers = (grain, stripes, blobs)
    first = makers[int(rng.integers(0, 3))]()
    if rng.random() < 0.4:
        second = makers[int(rng.integers(0, 3))]()
        alpha = rng.uniform(0.3, 0.7)
        first = alpha * first + (1 - alpha) * second
    return first


def _rotated(points: np.ndarray, sx: float, sy: float, angle: float, cx: float, cy: float) -> np.ndarray:
    """Scale unit-shape points, rotate them and move them to (cx, cy); returns int32 Nx2."""
    pts = points * np.array([sx, sy], np.float32)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]], np.float32)
    pts = pts @ rot.T + np.array([cx, cy], np.float32)
    return np.round(pts).astype(np.int32)


_TRIANGLE = np.array([[0.0, -0.5], [0.5, 0.45], [-0.5, 0.45]], np.float32)
_SQUARE = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float32)
_STAR_RADII = [0.5 if i % 2 == 0 else 0.2 for i in range(10)]  # outer and inner vertices alternate
_STAR = np.array(
    [[r * math.sin(i * math.pi / 5), -r * math.cos(i * math.pi / 5)] for i, r in enumerate(_STAR_RADII)],
    np.float32,
)
_CROSS = np.array(
    [
        [-0.17, -0.5],
        [0.17, -0.5],
        [0.17, -0.17],
        [0.5, -0.17],
        [0.5, 0.17],
        [0.17, 0.17],
        [0.17, 0.5],
        [-0.17, 0.5],
        [-0.17, 0.17],
        [-0.5, 0.17],
        [-0.5, -0.17],
        [-0.17, -0.17],
    ],
    np.float32,
)


def _shape_mask(rng: np.random.Generator, cls: int, size: float) -> np.ndarray:
    """Draw class ``cls`` at roughly ``size`` pixels on a local canvas; returns a bool mask."""
    pad = 2
    side = int(math.ceil(size * 1.3)) + 2 * pad
    mask = np.zeros((side, side), np.uint8)
    c = side / 2 - 0.5
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    sx, sy = size * aspect, size / aspect
    angle = rng.uniform(0, 2 * math.pi)
    thickness = max(1, int(round(size * rng.uniform(0.08, 0.16))))
    name = CLASS_NAMES[cls]
    if name in ("disc", "ring"):
        axes = (max(1, int(round(sx / 2))), max(1, int(round(sy / 2))))
        cv2.ellipse(
            mask,
            (int(round(c)), int(round(c))),
            axes,
            math.degrees(angle),
            0,
            360,
            1,
            -1 if name == "disc" else thickness,
        )
    elif name in ("striped_square", "hollow_square"):
        pts = _rotated(_SQUARE, sx * 0.85, sy * 0.85, angle, c, c)
        if name == "striped_square":
            cv2.fillPoly(mask, [pts], 1)
        else:
            cv2.polylines(mask, [pts], True, 1, thickness)
    elif name in ("triangle", "hollow_triangle"):
        pts = _rotated(_TRIANGLE, sx, sy, angle, c, c)
        if name == "triangle":
            cv2.fillPoly(mask, [pts], 1)
        else:
            cv2.polylines(mask, [pts], True, 1, thickness)
    elif name == "star":
        cv2.fillPoly(mask, [_rotated(_STAR, sx * 1.1, sy * 1.1, angle, c, c)], 1)
    elif name == "cross":
        cv2.fillPoly(mask, [_rotated(_CROSS, sx, sy, angle, c, c)], 1)
    else:  # pragma: no cover - CLASS_NAMES and this function change together
        raise ValueError(f"unknown class {name!r}")
    return mask.astype(bool)


def _distractor_mask(rng: np.random.Generator, size: float) -> np.ndarray:
    """Unlabelled clutter that shares colours and edges with the classes but not their shapes."""
    side = int(math.ceil(size)) + 4
    mask = np.zeros((side, side), np.uint8)
    c = side / 2
    kind = int(rng.integers(0, 5))
    thickness = max(1, int(round(size * rng.uniform(0.03, 0.1))))
    if kind == 0:  # straight line
        a = rng.uniform(0, 2 * math.pi)
        p0 = (int(c - math.cos(a) * size / 2), int(c - math.sin(a) * size / 2))
        p1 = (int(c + math.cos(a) * size / 2), int(c + math.sin(a) * size / 2))
        cv2.line(mask, p0, p1, 1, thickness)
    elif kind == 1:  # zigzag polyline
        n = int(rng.integers(3, 7))
        pts = rng.uniform(2, side - 2, size=(n, 2)).astype(np.int32)
        cv2.polylines(mask, [pts], False, 1, thickness)
    elif kind == 2:  # open arc
        start = rng.uniform(0, 360)
        span = rng.uniform(60, 220)
        axes = (max(1, int(size / 2 * rng.uniform(0.6, 1.0))), max(1, int(size / 2 * rng.uniform(0.6, 1.0))))
        cv2.ellipse(mask, (int(c), int(c)), axes, 0, start, start + span, 1, thickness)
    elif kind == 3:  # elongated ellipse (aspect 3-6), unlike the round disc class
        major = size / 2
        minor = max(1.0, major / rng.uniform(3, 6))
        cv2.ellipse(mask, (int(c), int(c)), (int(major), int(minor)), rng.uniform(0, 180), 0, 360, 1, -1)
    else:  # amoeba blob: a circle with a wobbling radius
        theta = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        r = size / 2 * 0.8 * (1 + 0.25 * np.sin(rng.integers(2, 4) * theta + rng.uniform(0, 6.3)))
        pts = np.stack([c + r * np.cos(theta), c + r * np.sin(theta)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _texture(rng: np.random.Generator, cls: int | None, shape: tuple[int, int], size: float) -> np.ndarray:
    """Fill colours for a local canvas: stripes for the striped class, else solid with grain/gradient."""
    h, w = shape
    c1 = _random_colour(rng)
    if cls is not None and CLASS_NAMES[cls] == "striped_square":
        c2 = _random_colour(rng)
        while np.abs(c1 - c2).sum() < 150:
            c2 = _random_colour(rng)
        period = max(2.5, size * rng.uniform(0.18, 0.35))
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0
        tex = np.where(t[..., None], c1, c2)
    else:
        tex = np.broadcast_to(c1, (h, w, 3)).copy()
        if rng.random() < 0.5:  # soft gradient across the object
            g = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(-40, 40, size=3)
            tex = tex + g
    tex = tex + rng.normal(0, rng.uniform(0, 12), size=(h, w, 3))
    return tex.astype(np.float32)


def render_sample(variant: str, seed: int, split: str, index: int) -> Sample:
    """Render one image of a split with its labels; identical inputs give identical arrays.

    Args:
        variant: A key of ``VARIANTS``.
        seed: Dataset seed.
        split: One of ``SPLITS``.
        index: Image index inside the split.

    Returns:
        The rendered :class:`Sample` (image before encoding, background-only render, instances).
    """
    spec = VARIANTS[variant]
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    size = spec.imgsz
    bg = _background(rng, size)
    canvas = bg.copy()
    owner = np.full((size, size), -1, np.int32)  # -1 background, -2 clutter, >=0 object id

    n_obj = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    n_dis = int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))
    # Cycle through a permutation of the classes so every image spreads its objects over classes.
    perm = rng.permutation(len(CLASS_NAMES))
    items = [("obj", int(perm[i % len(perm)])) for i in range(n_obj)] + [("dis", None)] * n_dis
    order = rng.permutation(len(items))

    placed: list[tuple[int, np.ndarray, tuple[int, int], int]] = []  # cls, local mask, (y, x), full area
    lo, hi = math.log(spec.object_px[0]), math.log(spec.object_px[1])
    for idx in order:
        kind, cls = items[int(idx)]
        for _attempt in range(12):
            if kind == "obj":
                obj_size = math.exp(rng.uniform(lo, hi))
                local = _shape_mask(rng, cls, obj_size)
            else:
                obj_size = math.exp(rng.uniform(math.log(spec.object_px[0] * 1.5), math.log(spec.object_px[1] * 1.3)))
                local = _distractor_mask(rng, obj_size)
            lh, lw = local.shape
            # Centres may fall slightly outside the image so objects get cut by its border.
            cy = int(rng.integers(-lh // 4, size + lh // 4))
            cx = int(rng.integers(-lw // 4, size + lw // 4))
            y0, x0 = cy - lh // 2, cx - lw // 2
            iy0, ix0, iy1, ix1 = max(0, y0), max(0, x0), min(size, y0 + lh), min(size, x0 + lw)
            if iy1 <= iy0 or ix1 <= ix0:
                continue
            sub = local[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
            full_area = int(local.sum())
            if not sub.any() or (kind == "obj" and (sub.sum() < 0.6 * full_area or sub.sum() < 8)):
                continue
            # Reject a placement that would hide too much of an object already drawn.
            region = owner[iy0:iy1, ix0:ix1]
            ok = True
            for oid in np.unique(region[sub]):
                if oid < 0:
                    continue
                visible = int((owner == oid).sum())
                hidden = int(((region == oid) & sub).sum())
                if visible - hidden < spec.min_visible * placed[oid][3]:
                    ok = False
                    break
            if not ok:
                continue
            local_bg = canvas[iy0:iy1, ix0:ix1][sub].mean(axis=0)
            for _c in range(6):  # prefer colours that stand out from what lies underneath
                tex = _texture(rng, cls, sub.shape, obj_size)
                if np.abs(tex[sub].mean(axis=0) - local_bg).sum() >= 70:
                    break
            canvas[iy0:iy1, ix0:ix1][sub] = tex[sub]
            if kind == "obj":
                region[sub] = len(placed)
                placed.append((cls, local, (y0, x0), full_area))
            else:
                region[sub] = -2
            break

    # Sensor effects apply to both renders, so background and image differ only where things were drawn.
    noise = rng.normal(0, rng.uniform(2, 10), size=(size, size, 3)).astype(np.float32)
    blur = rng.uniform(0, 1.2)
    finished = []
    for arr in (canvas, bg):
        out = arr + noise
        if blur > 0.6:
            out = cv2.GaussianBlur(out, (0, 0), blur)
        finished.append(np.clip(np.round(out), 0, 255).astype(np.uint8))

    instances = []
    for oid, (cls, _local, _pos, _area) in enumerate(placed):
        mask = owner == oid
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        instances.append(Instance(cls, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), mask))
    return Sample(finished[0], finished[1], instances)


# ---------------------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_ok(out: Path, variant: str, seed: int) -> bool:
    """True when ``out`` holds a complete dataset written by this generator version for variant/seed."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    if (meta.get("generator_version"), meta.get("variant"), meta.get("seed")) != (GENERATOR_VERSION, variant, seed):
        return False
    if meta.get("path") != str(out.resolve()):
        return False  # data.yaml holds an absolute path; a moved folder must be rewritten
    for rel, digest in meta.get("files", {}).items():
        f = out / rel
        if not f.is_file() or _sha256(f) != digest:
            return False
    return True


def _data_yaml(root: Path) -> str:
    # The header keeps the generator's old path (datasets/synth_shapes.py) so that data.yaml, and the manifest
    # that hashes it, stay byte-identical to the datasets written before the generator moved into the package.
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))
    return (
        f"# Synthetic shapes dataset written by datasets/synth_shapes.py\n"
        f"path: {root}\n"
        f"train: images/train\n"
        f"val: images/val\n"
        f"test: images/test\n"
        f"names:\n{names}\n"
    )


def generate(out_dir: str | Path, variant: str = "full", seed: int = 0, force: bool = False) -> Path:
    """Write the dataset in YOLO layout and return the path of its ``data.yaml``.

    The folder gets ``images/{train,val,test}/*.png``, ``labels/{train,val,test}/*.txt``,
    ``data.yaml`` (absolute ``path:``) and ``manifest.json`` (version, variant, seed, file hashes).
    A folder that already holds a complete dataset for the same variant and seed is kept as is
    unless ``force``. The dataset is written to a temporary sibling folder and renamed into place.

    Args:
        out_dir: Destination folder.
        variant: ``"full"`` or ``"tiny"`` (see ``VARIANTS``).
        seed: Seed; the same seed gives byte-identical files.
        force: Regenerate even when a complete dataset is already there.

    Returns:
        Absolute path of ``data.yaml``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    out = Path(out_dir).resolve()
    if not force and _manifest_ok(out, variant, seed):
        LOGGER.info("dataset %s already complete (variant=%s, seed=%d)", out, variant, seed)
        return out / "data.yaml"

    spec = VARIANTS[variant]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files: dict[str, str] = {}
        stats = {"instances": [0] * len(CLASS_NAMES), "small": 0}
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            n = spec.split_sizes[split]
            for i in range(n):
                sample = render_sample(variant, seed, split, i)
                # PNG: lossless, so the files hold exactly the pixels the labels were computed on.
                ok, buf = cv2.imencode(".png", sample.image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
                    raise RuntimeError(f"could not encode image {split}/{i}")
                stem = f"{split}_{i:05d}"
                img_rel, lbl_rel = f"images/{split}/{stem}.png", f"labels/{split}/{stem}.txt"
                (tmp / img_rel).write_bytes(buf.tobytes())
                text = "\n".join(sample.yolo_lines()) + ("\n" if sample.instances else "")
                (tmp / lbl_rel).write_text(text)
                for inst in sample.instances:
                    stats["instances"][inst.cls] += 1
                    x0, y0, x1, y1 = inst.box
                    stats["small"] += max(x1 - x0 + 1, y1 - y0 + 1) < 16
            LOGGER.info("%s: %d images", split, n)
        (tmp / "data.yaml").write_text(_data_yaml(out))
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                files[f.relative_to(tmp).as_posix()] = _sha256(f)
        meta = {
            "generator_version": GENERATOR_VERSION,
            "variant": variant,
            "seed": seed,
            "path": str(out),
            "imgsz": spec.imgsz,
            "split_sizes": spec.split_sizes,
            "names": list(CLASS_NAMES),
            "instances_per_class": dict(zip(CLASS_NAMES, stats["instances"])),
            "small_instances_lt16px": stats["small"],
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOGGER.info("wrote %s", out / "data.yaml")
    return out / "data.yaml"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="full", choices=sorted(VARIANTS))
    parser.add_argument(
        "--out", default=None, help="output folder (default datasets/generated/<variant> under the current folder)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete dataset exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or Path("datasets") / "generated" / args.variant
    print(generate(out, variant=args.variant, seed=args.seed, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
