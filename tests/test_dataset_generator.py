"""Tests of yoloslim.testing.synth_shapes (the synthetic shapes dataset generator) on its tiny variant."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from yoloslim.testing import synth_shapes as synth

TINY = synth.VARIANTS["tiny"]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def _labels(root: Path, split: str) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted((root / "labels" / split).glob("*.txt")):
        rows = [list(map(float, line.split())) for line in f.read_text().splitlines() if line.strip()]
        out[f.stem] = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("synth") / "tiny", variant="tiny", seed=0).parent


def test_same_seed_regenerates_byte_identical_files(tiny, tmp_path):
    before = _hashes(tiny)
    synth.generate(tiny, variant="tiny", seed=0, force=True)
    assert _hashes(tiny) == before

    other = synth.generate(tmp_path / "elsewhere", variant="tiny", seed=0).parent
    moved = _hashes(other)
    # Only data.yaml and the manifest hold the (absolute) folder path.
    differs = {k for k in before if before[k] != moved.get(k)}
    assert differs == {"data.yaml", "manifest.json"}
    assert len(before) == len(moved)


def test_other_seed_draws_other_images(tiny, tmp_path):
    other = synth.generate(tmp_path / "seed1", variant="tiny", seed=1).parent
    a, b = _hashes(tiny), _hashes(other)
    images = [k for k in a if k.startswith("images/")]
    assert sum(a[k] != b[k] for k in images) == len(images)


def test_split_sizes_and_data_yaml_match_the_variant(tiny):
    data = yaml.safe_load((tiny / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute() and Path(data["path"]) == tiny.resolve()
    assert data["names"] == dict(enumerate(synth.CLASS_NAMES))
    assert len(data["names"]) >= 6
    for split in synth.SPLITS:
        assert data[split] == f"images/{split}"
        images = sorted((tiny / "images" / split).glob("*.png"))
        labels = sorted((tiny / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == TINY.split_sizes[split]
        assert [p.stem for p in images] == [p.stem for p in labels]
        h, w = cv2.imread(str(images[0])).shape[:2]
        assert (h, w) == (TINY.imgsz, TINY.imgsz)


def test_every_class_is_present_and_roughly_balanced(tiny):
    counts = Counter()
    for split in synth.SPLITS:
        for rows in _labels(tiny, split).values():
            counts.update(int(c) for c in rows[:, 0])
    assert set(counts) == set(range(len(synth.CLASS_NAMES)))
    assert max(counts.values()) / min(counts.values()) <= 2.5, counts


@pytest.mark.parametrize("split", synth.SPLITS)
def test_label_boxes_are_the_visible_boxes_of_drawn_pixels(tiny, split):
    size = TINY.imgsz
    for i, (stem, rows) in enumerate(_labels(tiny, split).items()):
        sample = synth.render_sample("tiny", 0, split, i)
        # The written files are this render: same labels, same pixels up to JPEG loss.
        assert (tiny / "labels" / split / f"{stem}.txt").read_text().splitlines() == sample.yolo_lines()
        decoded = cv2.imread(str(tiny / "images" / split / f"{stem}.png"))
        np.testing.assert_array_equal(decoded, sample.image)

        assert len(rows) == len(sample.instances) > 0
        xc, yc, bw, bh = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        eps = 1e-6
        assert np.all(xc - bw / 2 >= -eps) and np.all(xc + bw / 2 <= 1 + eps)
        assert np.all(yc - bh / 2 >= -eps) and np.all(yc + bh / 2 <= 1 + eps)
        assert np.all(bw > 0) and np.all(bh > 0)

        image = sample.image.astype(np.int16)
        background = sample.background.astype(np.int16)
        for row, inst in zip(rows, sample.instances):
            x0, y0 = round((row[1] - row[3] / 2) * size), round((row[2] - row[4] / 2) * size)
            x1, y1 = round((row[1] + row[3] / 2) * size), round((row[2] + row[4] / 2) * size)
            ys, xs = np.nonzero(inst.mask)
            # The box is the tight box of the object's visible pixels ...
            assert (x0, y0, x1 - 1, y1 - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            # ... and those pixels show the object, not the background.
            diff = np.abs(image - background).sum(axis=2)
            assert (diff[inst.mask] > 0).mean() > 0.8
            assert diff[y0:y1, x0:x1].mean() > 10


def test_full_variant_has_small_large_and_occluded_objects():
    small = large = overlaps = 0
    for i in range(12):
        sample = synth.render_sample("full", 0, "train", i)
        sides = [max(x1 - x0 + 1, y1 - y0 + 1) for x0, y0, x1, y1 in (inst.box for inst in sample.instances)]
        small += sum(s < 16 for s in sides)
        large += sum(s > 48 for s in sides)
        boxes = [inst.box for inst in sample.instances]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                ax0, ay0, ax1, ay1 = boxes[a]
                bx0, by0, bx1, by1 = boxes[b]
                overlaps += ax0 <= bx1 and bx0 <= ax1 and ay0 <= by1 and by0 <= ay1
        # Clutter is drawn but unlabelled: pixels differ from the background outside every label mask.
        labelled = np.zeros(sample.image.shape[:2], bool)
        for inst in sample.instances:
            labelled |= inst.mask
        diff = np.abs(sample.image.astype(np.int16) - sample.background).sum(axis=2)
        assert (diff[~labelled] > 30).sum() > 20
    assert small >= 5 and large >= 3 and overlaps >= 3, (small, large, overlaps)


def test_complete_dataset_is_kept_and_a_damaged_one_is_rewritten(tiny):
    data_yaml = tiny / "data.yaml"
    image = next((tiny / "images" / "val").glob("*.png"))
    stamp = image.stat().st_mtime_ns
    assert synth.generate(tiny, variant="tiny", seed=0) == data_yaml
    assert image.stat().st_mtime_ns == stamp

    good = image.read_bytes()
    image.write_bytes(b"broken")
    synth.generate(tiny, variant="tiny", seed=0)
    assert image.read_bytes() == good


def test_interrupted_generation_leaves_no_partial_folder(tmp_path, monkeypatch):
    real = synth.render_sample
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "render_sample", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "ds", variant="tiny", seed=0)
    assert list(tmp_path.iterdir()) == []


def test_unknown_variant_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        synth.generate(tmp_path / "x", variant="huge")
