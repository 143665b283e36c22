"""Label-free data: a video or an image folder becomes a dataset the original labels itself (frames sampled, cached)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
import yaml

from yoloslim import DataError, load_checkpoint
from yoloslim.footage import FootageOptions, is_footage, pseudo_labelled_dataset
from yoloslim_test_support import assert_one_line_error, run_cli, run_main


def _frames(tiny_data: Path) -> list[Path]:
    return sorted((tiny_data.parent / "images" / "train").glob("*.png"))[:24]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, tiny_data) -> Path:
    """A 24-frame video of the tiny dataset's training images."""
    out = tmp_path_factory.mktemp("footage") / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (96, 64)) for p in _frames(tiny_data)]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for f in frames:
        writer.write(f)
    writer.release()
    return out


def test_video_frames_are_sampled_labelled_by_the_original_and_cached(clip, tiny_ckpt, tmp_path, monkeypatch):
    opts = FootageOptions(frames=10, first=2, last=22, pseudo_conf=0.001)
    data = pseudo_labelled_dataset(clip, tiny_ckpt, 64, opts, cache_root=tmp_path)
    root = data.parent
    d = yaml.safe_load(data.read_text())
    model, _ = load_checkpoint(tiny_ckpt)
    assert d["names"] == [model.names[i] for i in sorted(model.names)]
    train = sorted((root / "images" / "train").glob("*.jpg"))
    val = sorted((root / "images" / "val").glob("*.jpg"))
    assert (len(train), len(val)) == (9, 1)  # the last 10 % of the range held out, in time
    indices = json.loads((root / "footage.json").read_text())["frame_indices"]
    assert indices[0] == 2 and indices[-1] == 21 and len(indices) == 10
    assert val[0].stem == "frame_000021" and all(p.stem < val[0].stem for p in train)
    labels = [(root / "labels" / "train" / f"{p.stem}.txt").read_text() for p in train]
    assert sum(len(t.splitlines()) for t in labels) > 0  # the original's own detections
    for line in "".join(labels).splitlines():
        c, *xywh = line.split()
        assert 0 <= int(c) < len(d["names"]) and all(0.0 <= float(v) <= 1.0 for v in xywh)
    assert sorted(p.name for p in (root / "images" / "test").iterdir()) == [p.name for p in val]
    assert not (root / "labels" / "test").exists()  # the test split is scored by agreement with the original

    def no_model_run(*args, **kwargs):
        raise AssertionError("the cached dataset must be reused")

    monkeypatch.setattr("yoloslim.footage._build", no_model_run)
    assert pseudo_labelled_dataset(clip, tiny_ckpt, 64, opts, cache_root=tmp_path) == data
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_image_folder_is_footage_too(tiny_data, tiny_ckpt, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    for p in _frames(tiny_data)[:6]:
        shutil.copy2(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    assert is_footage(folder) and is_footage(tmp_path / "x.mp4") and not is_footage(tiny_data)
    data = pseudo_labelled_dataset(folder, tiny_ckpt, 64, FootageOptions(frames=6), cache_root=tmp_path / "cache")
    assert len(list((data.parent / "images" / "train").glob("*.jpg"))) == 5


@pytest.mark.parametrize(
    "name, make, opts, words",
    [
        ("clip.mp4", lambda p: p.write_text("no video"), FootageOptions(), ["cannot be read as a video"]),
        ("folder", lambda p: p.mkdir(), FootageOptions(), ["holds no images"]),
        ("missing.mp4", lambda p: None, FootageOptions(), ["not found"]),
        ("clip.mp4", lambda p: p.write_text("x"), FootageOptions(frames=1), ["at least 2 frames"]),
    ],
)
def test_unreadable_footage_is_one_clear_error(tmp_path, tiny_ckpt, name, make, opts, words):
    source = tmp_path / name
    make(source)
    with pytest.raises(DataError) as e:
        pseudo_labelled_dataset(source, tiny_ckpt, 64, opts, cache_root=tmp_path / "cache")
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_bad_frame_range_on_the_command_line_is_one_line(clip, tiny_ckpt, tmp_path):
    r = run_main(
        "finetune", str(tiny_ckpt), "--data", str(clip), "--out", str(tmp_path / "o.pt"), "--frame-range", "9-3"
    )
    assert_one_line_error(r, "--frame-range '9-3'", "START:END")


def test_label_free_prune_then_distill_from_the_original_keeps_the_teacher_out_of_checkpoints(
    clip, tiny_ckpt, tmp_path
):
    recipe = tmp_path / "street.yaml"
    recipe.write_text(
        "train: {batch: 4, amp: false, workers: 0}\n"
        "stages:\n"
        "  - {type: prune, method: channel, ratio: 0.3, epochs: 0}\n"
        "  - {type: distill, teacher: original, epochs: 1}\n"
    )
    r = run_cli(
        "compress",
        str(tiny_ckpt),
        "--data",
        str(clip),
        "--recipe",
        str(recipe),
        "--frames",
        "12",
        "--pseudo-conf",
        "0.001",
        "--imgsz",
        "64",
        "--runs",
        "2",
        "--out",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["quality"].startswith("agreement with the FP32 original")
    assert (tmp_path / "runs" / "pseudo").is_dir()  # the cache, relative to where the command ran
    original, _ = load_checkpoint(tiny_ckpt)
    pruned, _ = load_checkpoint(tmp_path / "run" / "01_prune" / "prune.pt")
    n_pruned = sum(p.numel() for p in pruned.parameters())
    assert n_pruned < sum(p.numel() for p in original.parameters())
    for path in (tmp_path / "run" / "02_distill").rglob("*.pt"):  # the student only: the teacher was the original
        model, _ = load_checkpoint(path)
        assert sum(p.numel() for p in model.parameters()) == n_pruned, path
        assert not any("teacher" in name or "distill" in name for name, _ in model.named_modules()), path
