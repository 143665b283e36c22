"""Tests of yoloslim.dataset: datasets checked like checkpoints (issue 15). The YAML, its splits, label files, images
and class names are checked before Ultralytics' loader runs, and bad ones stop with one line naming the file and the
fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from yoloslim.dataset import (
    check_class_names,
    check_dataset,
    check_images,
    check_labels,
    check_split,
    label_file_problem,
    split_images,
)
from yoloslim.errors import DataError, ModelError
from yoloslim_test_support import assert_one_line_error, run_main

NC = 8  # classes of the tiny generated dataset


def copy_dataset(tiny_data: Path, dest: Path, names: list[str] | None = None) -> Path:
    """Copy the tiny dataset folder to ``dest`` and point its YAML there (optionally with other class names)."""
    shutil.copytree(Path(tiny_data).parent, dest)
    text = (dest / "data.yaml").read_text()
    text = re.sub(r"(?m)^path: .*$", f"path: {dest}", text)
    if names is not None:
        text = text.split("names:")[0] + "names: " + repr(names) + "\n"
    (dest / "data.yaml").write_text(text)
    return dest / "data.yaml"


def label_files(root: Path, split: str) -> list[Path]:
    return sorted((root / "labels" / split).glob("*.txt"))


# --------------------------------------------------------------------------------------------- label rule


LINES = {
    "box": ("0 0.5 0.5 0.2 0.2\n", True),
    "class as float 1.0": ("1.0 0.5 0.5 0.2 0.2\n", True),
    "tiny overshoot tolerated": ("0 1.005 -0.005 0.2 1.008\n", True),
    "polygon": ("0 0.1 0.1 0.3 0.1 0.2 0.4\n", True),
    "blank lines and BOM": ("\ufeff\n0 0.5 0.5 0.2 0.2\n\n  \n1 0.2 0.2 0.1 0.1\n", True),
    "4 columns": ("0 0.5 0.5 0.2\n", False),
    "6 columns": ("0 0.5 0.5 0.2 0.2 0.9\n", False),
    "class id >= nc": (f"{NC} 0.5 0.5 0.2 0.2\n", False),
    "negative class": ("-1 0.5 0.5 0.2 0.2\n", False),
    "fractional class": ("0.5 0.5 0.5 0.2 0.2\n", False),
    "NaN": ("0 nan 0.5 0.2 0.2\n", False),
    "inf": ("0 0.5 inf 0.2 0.2\n", False),
    "negative x": ("0 -0.3 0.5 0.2 0.2\n", False),
    "negative w": ("0 0.5 0.5 -0.005 0.2\n", False),
    "w > 1": ("0 0.5 0.5 1.5 0.2\n", False),
    "pixel coordinates": ("0 120 80 30 40\n", False),
    "not a number": ("0 x 0.5 0.2 0.2\n", False),
    "polygon outside": ("0 0.1 0.1 0.3 0.1 0.2 1.6\n", False),
    "mixed boxes and polygons": ("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.3 0.1 0.2 0.4\n", False),
}


@pytest.mark.parametrize("case", list(LINES))
def test_label_rule_reports_exactly_what_ultralytics_drops(case: str, tmp_path: Path) -> None:
    from ultralytics.data.utils import verify_image_label

    text, valid = LINES[case]
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    label = tmp_path / "a.txt"
    label.write_text(text, encoding="utf-8")
    corrupt = verify_image_label((str(image), str(label), "", False, NC, 0, 0, False))[8]
    problem = label_file_problem(label, NC)
    assert (problem is None) == valid, problem
    assert bool(corrupt) == (not valid)  # Ultralytics drops the image exactly when we report it


def test_non_utf8_label_file_is_reported_not_decoded(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert label_file_problem(label, NC)[2].startswith("is not UTF-8")


def test_check_labels_names_first_bad_file_line_what_and_how_many(tiny_data: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_data, tmp_path / "d")
    files = label_files(tmp_path / "d", "val")
    first = files[0].read_text().splitlines()
    files[0].write_text("\n".join([first[0], f"{NC + 3} 0.5 0.5 0.2 0.2", *first[1:]]) + "\n")
    files[3].write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DataError) as error:
        check_labels(check_dataset(data), "val", data)
    message = str(error.value)
    assert message.startswith(f"{files[0]}:2: ")
    assert f"class id {NC + 3}" in message and "names:" in message
    assert f"2 of {len(files)} label files of the 'val' split" in message and "\n" not in message
    assert check_labels(check_dataset(data), "test", data) == len(label_files(tmp_path / "d", "test"))


def test_unlabelled_split_and_empty_label_files_are_valid(tiny_data: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_data, tmp_path / "d")
    shutil.rmtree(tmp_path / "d" / "labels" / "val")  # unlabelled, like real footage: agreement mode
    for f in label_files(tmp_path / "d", "test"):
        f.write_text("")  # backgrounds
    checked = check_dataset(data)
    assert check_labels(checked, "val", data) == 0
    assert check_labels(checked, "test", data) == 16
    assert check_images(checked, "val", data) == 16


# --------------------------------------------------------------------------------------------- images


def test_check_images_names_split_folder_first_unreadable_image_and_count(tiny_data: Path, tmp_path: Path) -> None:
    data = copy_dataset(tiny_data, tmp_path / "d")
    images = sorted((tmp_path / "d" / "images" / "val").glob("*.png"))
    images[1].write_bytes(images[1].read_bytes()[:40])  # truncated
    cv2.imwrite(str(images[5]), np.zeros((4, 4, 3), np.uint8))  # too small for Ultralytics
    with pytest.raises(DataError) as error:
        check_images(check_dataset(data), "val", data)
    message = str(error.value)
    assert message.startswith(f"{images[1]}: cannot be read as an image")
    assert f"2 of {len(images)} images" in message and str(tmp_path / "d" / "images" / "val") in message
    assert check_images(check_dataset(data), "val", data, sample=4) == 4  # a sample can miss them
    for image in images:
        image.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"all {len(images)} images"):
        check_images(check_dataset(data), "val", data)


def test_a_truncated_jpeg_is_refused_because_ultralytics_would_rewrite_it_in_place(
    tiny_data: Path, tmp_path: Path
) -> None:
    data = copy_dataset(tiny_data, tmp_path / "d")
    images = sorted((tmp_path / "d" / "images" / "train").glob("*.png"))
    jpeg = images[-1].with_suffix(".jpg")
    cv2.imwrite(str(jpeg), cv2.imread(str(images[-1])))
    images[-1].unlink()
    jpeg.write_bytes(jpeg.read_bytes()[:-2])  # decodes, but lacks the end-of-image marker
    before = jpeg.read_bytes()
    for sample in (None, 2):  # also when the image is outside the checked sample
        with pytest.raises(DataError, match="truncated.*never modifies its inputs"):
            check_images(check_dataset(data), "train", data, sample=sample)
    assert jpeg.read_bytes() == before


# --------------------------------------------------------------------------------------------- the YAML and its splits


def _dataset(root: Path, yaml_text: str | None = None, images: int = 2) -> Path:
    """A minimal YOLO dataset: `images` grey images with one box each in train and val, and its YAML."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(images):
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), np.full((32, 32, 3), 127, np.uint8))
            (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    yaml_path = root / "data.yaml"
    yaml_path.write_text(
        yaml_text if yaml_text is not None else f"path: {root}\ntrain: images/train\nval: images/val\nnames: [box]\n"
    )
    return yaml_path


def test_valid_dataset_resolves_paths_and_lists_images(tmp_path: Path) -> None:
    data = check_dataset(_dataset(tmp_path))
    assert data["names"] == {0: "box"} and data["nc"] == 1
    assert Path(data["val"]) == (tmp_path / "images" / "val").resolve()
    assert [p.name for p in split_images(data, "val")] == ["0.jpg", "1.jpg"]


def test_missing_dataset_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as error:
        check_dataset(tmp_path / "data.yaml")
    assert str(tmp_path / "data.yaml") in str(error.value)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("train: images/train\nval: images/val\n", "no 'names:'"),
        ("train: images/train\nnames: [box]\n", "no 'val:'"),
        ("train: images/train\nval: images/nowhere\nnames: [box]\n", "images not found"),
        ("train: images/train\nval: empty\nnames: [box]\n", "no images in the val split"),
        ("train: [unclosed\n", "cannot read"),
    ],
)
def test_broken_dataset_is_a_data_error_naming_the_yaml(yaml_text: str, message: str, tmp_path: Path) -> None:
    yaml_path = _dataset(tmp_path, f"path: {tmp_path}\n{yaml_text}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=message) as error:
        check_dataset(yaml_path)
    assert str(yaml_path) in str(error.value)
    assert "\n" not in str(error.value)


def test_binary_dataset_yaml_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(DataError, match="not a text file") as error:
        check_dataset(path)
    assert str(path) in str(error.value)


def test_split_must_be_one_the_yaml_defines_and_the_message_lists_them(tiny_data: Path) -> None:
    checked = check_dataset(tiny_data)
    assert check_split(checked, "test", tiny_data) == "test"
    with pytest.raises(DataError, match="no 'nosuch:' split; it has train, val, test") as error:
        check_split(checked, "nosuch", tiny_data)
    assert str(tiny_data) in str(error.value)


# --------------------------------------------------------------------------------------------- classes


def test_class_mismatch_names_the_model_both_counts_and_cuts_long_lists() -> None:
    check_class_names({0: "a", 1: "b"}, ["a", "b"], "m.pt", "d.yaml")  # dict vs list, same classes
    check_class_names(None, ["a"], "m.engine", "d.yaml")  # a model that does not say is not checked
    with pytest.raises(DataError, match=r"class 1 is 'car' in the model, 'truck' in the dataset") as error:
        check_class_names(["person", "car"], {0: "person", 1: "truck"}, "m.pt", "d.yaml")
    assert "model 'm.pt'" in str(error.value) and "'d.yaml'" in str(error.value)
    with pytest.raises(DataError, match=r"80 classes \[c0, .*74 more\] vs 2 \[c0, c1\]") as error:
        check_class_names([f"c{i}" for i in range(80)], ["c0", "c1"], "m.pt", "d.yaml")
    with pytest.raises(DataError, match="77 more") as error:
        check_class_names([f"c{i}" for i in range(80)], [f"d{i}" for i in range(80)], "m.pt", "d.yaml")
    assert len(str(error.value)) < 400


def test_measure_refuses_a_checkpoint_with_fewer_or_other_classes_before_measuring(
    tiny_data: Path, tiny_ckpt: Path, tmp_path: Path
) -> None:
    from yoloslim.pipeline import measure_models

    fewer = copy_dataset(tiny_data, tmp_path / "fewer", names=["disc", "ring"])
    for f in label_files(tmp_path / "fewer", "test"):
        f.write_text("")
    with pytest.raises(DataError, match=r"8 classes \[disc, ring, .*\] vs 2 \[disc, ring\]"):
        measure_models([tiny_ckpt], fewer, imgsz=64, runs=1)


def test_measure_checks_split_imgsz_threads_and_runs_before_any_work(tiny_data: Path, tiny_ckpt: Path) -> None:
    from yoloslim.pipeline import measure_models

    with pytest.raises(DataError, match="no 'nosuch:' split; it has train, val, test"):
        measure_models([tiny_ckpt], tiny_data, imgsz=64, split="nosuch", runs=1)
    for imgsz in (33, 0):
        with pytest.raises(DataError, match=f"--imgsz {imgsz}: .*stride 32"):
            measure_models([tiny_ckpt], tiny_data, imgsz=imgsz, runs=1)
    with pytest.raises(DataError, match="--threads 0"):
        measure_models([tiny_ckpt], tiny_data, imgsz=64, threads=0)
    with pytest.raises(DataError, match="--runs 0"):
        measure_models([tiny_ckpt], tiny_data, imgsz=64, runs=0)


def test_measure_on_an_unlabelled_split_still_reports_agreement(
    tiny_data: Path, tiny_ckpt: Path, tmp_path: Path
) -> None:
    from yoloslim.pipeline import measure_models

    data = copy_dataset(tiny_data, tmp_path / "d")
    shutil.rmtree(tmp_path / "d" / "labels")
    (row,) = measure_models([tiny_ckpt], data, imgsz=64, threads=1, runs=1)
    assert row.map50_95 is None and row.agreement["f1"] == 1.0


# --------------------------------------------------------------------------------------------- ONNX task


def obb_like_onnx(path: Path, task: str = "obb") -> Path:
    """A tiny ONNX graph with the metadata Ultralytics writes for a model of another task."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"task": task, "stride": "32", "names": "{0: 'plane', 1: 'ship'}", "imgsz": "[64, 64]"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_measure_refuses_an_onnx_model_of_another_task(tiny_data: Path, tmp_path: Path) -> None:
    from yoloslim.measurement import measure

    path = obb_like_onnx(tmp_path / "obb.onnx")
    with pytest.raises(ModelError, match="'obb' model") as error:
        measure([path], tiny_data, imgsz=64, split="val", latency=False)
    assert str(path) in str(error.value)


# --------------------------------------------------------------------------------------------- end to end


def _break(case: str, tiny_data: Path, tiny_ckpt: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Arguments of a ``yoloslim measure`` run on a broken copy of the tiny dataset, and words its error names."""
    root = tmp_path / "d"
    data = copy_dataset(tiny_data, root)
    model = str(tiny_ckpt)
    if case == "labels":  # every file broken a different way: class id >= nc, NaN, negative, w > 1, 4 columns
        bad = [f"{NC} 0.5 0.5 0.2 0.2", "0 nan 0.5 0.2 0.2", "0 -0.5 0.5 0.2 0.2", "0 0.5 0.5 1.5 0.2", "0 .5 .5 .2"]
        for i, f in enumerate(label_files(root, "test")):
            f.write_text(bad[i % len(bad)] + "\n")
        words = [str(label_files(root, "test")[0]) + ":1", f"class id {NC}", "16 of 16 label files"]
    elif case == "images":
        for image in (root / "images" / "test").glob("*.png"):
            image.write_bytes(b"\x00" * 100)
        words = ["cannot be read as an image", "all 16 images", str(root / "images" / "test")]
    elif case == "yaml":
        data.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
        words = [str(data), "not a text file"]
    elif case == "classes":
        names = ["disc", "ring", "square", "hollow_square", "triangle", "hollow_triangle", "star", "cross"]
        data = copy_dataset(tiny_data, tmp_path / "renamed", names=names)
        words = [f"model '{model}'", "class 2 is 'striped_square' in the model, 'square' in the dataset"]
    else:
        model = str(obb_like_onnx(tmp_path / "obb.onnx"))
        words = [model, "'obb' model"]
    return [model, "--data", str(data), "--imgsz", "64", "--runs", "1", "--threads", "1"], words


@pytest.mark.parametrize("case", ["labels", "images", "yaml", "classes", "obb_onnx"])
def test_cli_measure_on_bad_input_prints_one_line_and_exits_1(
    case: str, tiny_data: Path, tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, words = _break(case, tiny_data, tiny_ckpt, tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run_main("measure", *args)
    assert_one_line_error(result, *words)
    assert result.stdout.strip() == ""
