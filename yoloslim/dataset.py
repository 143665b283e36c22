"""Datasets: the YAML, its splits and images, and every check of a dataset's contents before any work.

Ultralytics' loader drops an image whose label file it cannot use (with a warning buried in its log), and stops
with a long traceback when it drops them all. Either way the mAP a user gets is not the mAP of their dataset. The
checks here read what the loader will read, apply its rules, and stop with one :class:`~yoloslim.errors.DataError`
naming the file, the line and the fix:

- :func:`check_dataset`: the YAML, through Ultralytics' ``check_det_dataset`` offline (no download), every listed
  split holding images; :func:`split_images` and :func:`has_labels` list a checked split's images and tell whether
  it is labelled;
- :func:`check_split`: the split a command reads (``--split``) is one the YAML defines;
- :func:`check_labels`: every label file of a split, line by line (:func:`label_line_problem` is the rule);
- :func:`check_images`: every image (or a sample) of a split opens as Ultralytics opens it;
- :func:`check_class_names`: a model's classes against the dataset's.

Every check either returns or raises a :class:`~yoloslim.errors.DataError`; none changes a file. The options of
the measurement harness (``--imgsz``, ``--threads``, ``--runs``) are checked in :mod:`yoloslim.measurement`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from yoloslim.errors import DataError, one_line

# Splits whose folders check_dataset verifies when the YAML lists them.
_SPLITS = ("train", "val", "test")

# The dataset YAML keys Ultralytics resolves as image splits (``minival`` is COCO's).
SPLIT_KEYS = ("train", "val", "test", "minival")

# Ultralytics' tolerance (``verify_image_label``): coordinates up to 1.01, and x/y down to -0.01 when w/h >= 0.
_TOLERANCE = 0.01

# How much of a bad line, and how many class names, an error message quotes.
_QUOTE_CHARS = 60
_NAMES_SHOWN = 6
_DIFFS_SHOWN = 3

_COLUMNS_FIX = "a box line is 'class x y w h' (5 columns), a polygon 'class x1 y1 x2 y2 x3 y3 ...' (7 or more, odd)"


# --------------------------------------------------------------------------------------------- the YAML and its splits


def split_images(data: dict[str, Any], split: str) -> list[Path]:
    """List the image files of one split of a checked dataset, in sorted order.

    Args:
        data: A dataset dictionary as returned by :func:`check_dataset` (paths already resolved).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        Image paths, as Ultralytics' dataloader would find them (folders searched recursively, ``.txt`` lists
        read line by line relative to the list's folder).
    """
    from ultralytics.data.utils import IMG_FORMATS

    sources = data.get(split) or []
    images: list[Path] = []
    for source in sources if isinstance(sources, list) else [sources]:
        source = Path(source)
        if source.is_dir():
            images += [p for p in source.rglob("*") if p.suffix.lower().lstrip(".") in IMG_FORMATS]
        elif source.is_file() and source.suffix == ".txt":
            for line in source.read_text().splitlines():
                line = line.strip()
                if line:
                    p = Path(line) if Path(line).is_absolute() else (source.parent / line)
                    if p.suffix.lower().lstrip(".") in IMG_FORMATS:
                        images.append(p.resolve())
        elif source.is_file() and source.suffix.lower().lstrip(".") in IMG_FORMATS:
            images.append(source)
    return sorted(images)


def has_labels(data: dict[str, Any], split: str) -> bool:
    """Whether any image of a checked dataset's split has a label file where Ultralytics looks for it.

    A split without a single label file is unlabelled (e.g. real footage): its quality measure is agreement with the
    original (:mod:`yoloslim.agreement`), not mAP.
    """
    from ultralytics.data.utils import img2label_paths

    images = split_images(data, split)
    return any(Path(p).is_file() for p in img2label_paths([str(i) for i in images]))


def check_dataset(data: str | Path) -> dict[str, Any]:
    """Validate a YOLO-format dataset YAML through Ultralytics' ``check_det_dataset``, offline.

    Args:
        data: Path to the dataset YAML (``path``/``train``/``val``/``names`` as Ultralytics expects).

    Returns:
        The dataset dictionary from ``check_det_dataset``: split paths resolved, ``names`` and ``nc`` filled in.

    Raises:
        DataError: If the YAML is missing, unreadable or not UTF-8 text (a binary file), lacks ``names`` (or
            ``nc``), ``train`` or ``val``, or a listed split points at a folder that does not exist or holds no
            images. Label and image contents are checked by :func:`check_labels` and :func:`check_images`
            for the split a command reads.
    """
    from ultralytics.data.utils import check_det_dataset

    file = Path(data)
    if file.suffix.lower() not in {".yaml", ".yml"}:
        raise DataError(f"{file}: not a dataset YAML; pass the .yaml file that lists train/val/names")
    if not file.is_file():
        raise DataError(f"{file}: dataset YAML not found; pass the path to an existing dataset .yaml file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{file}: not a text file (byte {e.start} is not UTF-8); pass the dataset YAML, saved as UTF-8 text"
        ) from e
    except OSError as e:
        raise DataError(f"{file}: cannot read the dataset YAML ({e.strerror or one_line(e)}); check the file") from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(f"{file}: cannot read the dataset YAML ({one_line(e)}); fix its syntax") from e
    if not isinstance(raw, dict):
        raise DataError(f"{file}: dataset YAML is not a mapping; it needs path/train/val/names keys")
    if raw.get("names") is None and raw.get("nc") is None:
        raise DataError(f"{file}: dataset YAML has no 'names:'; add the class names, e.g. names: {{0: person}}")
    for key in ("train", "val"):
        if not raw.get(key):
            raise DataError(f"{file}: dataset YAML has no '{key}:'; add the {key} image folder (relative to path:)")

    try:
        # autodownload=False: a YAML with a 'download:' key must not fetch anything; a missing split is an error.
        checked = check_det_dataset(str(file), autodownload=False)
    except Exception as e:  # SyntaxError/TypeError/FileNotFoundError from Ultralytics' checks
        raise DataError(f"{file}: {one_line(e)}; fix the dataset YAML or the folders it names") from e

    for split in _SPLITS:
        if not checked.get(split):
            continue
        sources = checked[split] if isinstance(checked[split], list) else [checked[split]]
        for source in sources:
            if not os.path.exists(source):
                raise DataError(
                    f"{file}: {split} images not found at '{source}'; fix '{split}:' (and 'path:') in the YAML"
                )
        if not split_images(checked, split):
            raise DataError(
                f"{file}: no images in the {split} split ({', '.join(map(str, sources))}); put images there "
                f"or point '{split}:' at the folder that has them"
            )
    return checked


def dataset_splits(data_dict: Mapping[str, Any]) -> list[str]:
    """The splits a checked dataset defines (``train``, ``val``, ``test``, ``minival`` present in its YAML)."""
    return [key for key in SPLIT_KEYS if data_dict.get(key)]


def check_split(data_dict: Mapping[str, Any], split: str, data: str | Path) -> str:
    """Check that the dataset YAML defines the split a command will read (``--split``).

    Args:
        data_dict: The dataset dictionary from :func:`check_dataset`.
        split: The split name asked for.
        data: The dataset YAML path, for the message.

    Returns:
        ``split``, unchanged.

    Raises:
        DataError: If the YAML has no such split; the message lists the splits it has.
    """
    splits = dataset_splits(data_dict)
    if split not in splits:
        raise DataError(
            f"{data}: has no '{split}:' split; it has {', '.join(splits) or 'none'}; pass --split "
            f"{' or '.join(splits) or 'val'} (or add '{split}:' to the YAML)"
        )
    return split


# --------------------------------------------------------------------------------------------- labels


def _numbers(tokens: Sequence[str]) -> list[float] | str:
    """The tokens as floats, or a problem naming the first token that is not a finite number."""
    values = []
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            return f"'{token[:20]}' is not a number; every column of a label line is a number"
        if not math.isfinite(value):
            return f"'{token[:20]}' is not a finite number; write the class id and coordinates as plain numbers"
        values.append(value)
    return values


def _box_problem(x: float, y: float, w: float, h: float, polygon: bool) -> str | None:
    """Ultralytics' coordinate rule for one box (of a polygon, its bounding box), or None when it holds."""
    what = "the polygon's box" if polygon else "the box"
    for name, value in (("x", x), ("y", y), ("w", w), ("h", h)):
        if value > 1 + _TOLERANCE:
            return (
                f"{what} has {name}={value:g} > 1; coordinates are fractions of the image size (divide pixels "
                f"by the image width/height)"
            )
    for name, value, low in (("x", x, -_TOLERANCE), ("y", y, -_TOLERANCE), ("w", w, 0.0), ("h", h, 0.0)):
        if value < low:
            return f"{what} has {name}={value:g} < 0; coordinates are fractions of the image size, in [0, 1]"
    return None


def label_line_problem(tokens: Sequence[str], nc: int) -> str | None:
    """What is wrong with one label line for a detection dataset, or None when Ultralytics uses it as is.

    The rule is Ultralytics' (``verify_image_label``), checked per line: ``class x y w h`` (5 columns), or a
    polygon ``class x1 y1 x2 y2 x3 y3 ...`` (an odd count of at least 7 columns), which Ultralytics turns into its
    bounding box; every value a finite number; the class a whole number in ``[0, nc)``; coordinates in ``[0, 1]``
    with Ultralytics' 1% tolerance (up to 1.01, and x/y down to -0.01), w and h not negative. A polygon is held to
    the same rule through its box. Mixing boxes and polygons in one file is a file-level rule, see
    :func:`label_file_problem`.

    Args:
        tokens: The line split on whitespace (not empty).
        nc: Number of classes of the dataset.

    Returns:
        A short description of the problem, or None.
    """
    n = len(tokens)
    if n == 5:  # the common case, checked without building a message (NaN fails every comparison)
        try:
            cls, x, y, w, h = map(float, tokens)
        except ValueError:
            pass
        else:
            low, high = -_TOLERANCE, 1 + _TOLERANCE
            if (
                cls.is_integer()
                and 0 <= cls < nc
                and low <= x <= high
                and low <= y <= high
                and 0 <= w <= high
                and 0 <= h <= high
            ):
                return None
    if n != 5 and (n < 7 or n % 2 == 0):
        return f"has {n} column{'s' if n != 1 else ''}; {_COLUMNS_FIX}"
    values = _numbers(tokens)
    if isinstance(values, str):
        return values
    cls = values[0]
    if not cls.is_integer() or not 0 <= cls < nc:
        shown = int(cls) if cls.is_integer() else cls
        return (
            f"class id {shown} is not a class of the dataset (whole numbers 0..{nc - 1}, nc={nc}); use an id from "
            f"the YAML's names: or add the class there"
        )
    if n == 5:
        return _box_problem(*values[1:], polygon=False)
    xs, ys = values[1::2], values[2::2]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    return _box_problem((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, polygon=True)


def label_file_problem(path: str | Path, nc: int) -> tuple[int, str, str] | None:
    """The first bad line of one label file, or None when Ultralytics would use every line of it.

    Lines are read as Ultralytics reads them (UTF-8 with or without a byte-order mark, blank lines skipped, split on
    whitespace). A file that mixes box lines (5 columns) and polygon lines is dropped whole by Ultralytics; the
    first line of the kind that comes second is reported.

    Args:
        path: The label ``.txt`` file.
        nc: Number of classes of the dataset.

    Returns:
        ``(line_number, line_text, problem)`` with a 1-based line number (0 when the file as a whole cannot be read),
        or None.

    Raises:
        FileNotFoundError: (or ``IsADirectoryError``/``NotADirectoryError``) when there is no label file: its image
            is a background, which is not a problem of the labels.
    """
    try:  # one open per file, no stat first: 100k files take seconds
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise
    except OSError as e:
        return 0, "", f"cannot be read ({e.strerror or type(e).__name__}); check the file's permissions"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return 0, "", "is not UTF-8 text; write labels as plain text lines 'class x y w h'"
    kinds: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        problem = label_line_problem(tokens, nc)
        if problem is not None:
            return number, line, problem
        kinds.setdefault("box" if len(tokens) == 5 else "polygon", (number, line))
    if len(kinds) == 2:
        number, line = max(kinds.values())  # the later first line of the two kinds
        return (
            number,
            line,
            (
                "mixes box lines (5 columns) and polygon lines in one file, and Ultralytics then "
                "drops the whole file; write every object of the file the same way"
            ),
        )
    return None


def _split_sources(data_dict: Mapping[str, Any], split: str) -> str:
    sources = data_dict.get(split) or []
    return ", ".join(map(str, sources if isinstance(sources, list) else [sources]))


def check_labels(data_dict: Mapping[str, Any], split: str, data: str | Path) -> int:
    """Check every label file of a split's images before Ultralytics' loader reads them.

    Images without a label file are backgrounds (and a split without any label file is unlabelled, which is
    valid: its quality is measured as agreement); an empty label file is a background too. Every line of every
    label file must pass :func:`label_line_problem`, whether Ultralytics would crash on it or silently drop the
    image: a dropped image makes the reported mAP that of another dataset. Files are read with plain Python, one
    pass, so a split of 100k images takes seconds.

    Args:
        data_dict: The dataset dictionary from :func:`check_dataset`.
        split: The split the command will read.
        data: The dataset YAML path, for the message.

    Returns:
        The number of label files checked (0 for an unlabelled split).

    Raises:
        DataError: Naming the first bad file and line, what is wrong and the fix, and how many files are bad.
    """
    from ultralytics.data.utils import img2label_paths

    nc = int(data_dict.get("nc") or len(data_dict.get("names") or ()))
    checked = 0
    bad = 0
    first: tuple[Path, int, str, str] | None = None
    for label in img2label_paths([str(p) for p in split_images(dict(data_dict), split)]):
        try:
            problem = label_file_problem(label, nc)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue  # no label file: a background image (Ultralytics' os.path.isfile test)
        path = Path(label)
        checked += 1
        if problem is not None:
            bad += 1
            first = first or (path, *problem)
    if first is not None:
        path, number, line, problem = first
        where = f"{path}:{number}" if number else str(path)
        quoted = line.strip()
        quoted = f" ('{quoted[:_QUOTE_CHARS]}{'...' if len(quoted) > _QUOTE_CHARS else ''}')" if quoted else ""
        count = f"{bad} of {checked} label files of the '{split}' split of {data} {'is' if bad == 1 else 'are'} bad"
        raise DataError(f"{where}: label{quoted} {problem}; {count}")
    return checked


# --------------------------------------------------------------------------------------------- images


_TRUNCATED_JPEG = (
    "is a JPEG without its end marker (truncated); Ultralytics would rewrite the file in place to "
    "repair it, and yoloslim never modifies its inputs: re-save the image (e.g. with PIL)"
)


def _jpeg_truncated(path: str | Path) -> bool:
    """Whether a JPEG file lacks its end-of-image marker (Ultralytics' loader then re-saves it over the original)."""
    try:
        with open(path, "rb") as f:
            f.seek(-2, 2)
            return f.read() != b"\xff\xd9"
    except OSError:
        return False


def image_problem(path: str | Path) -> str | None:
    """Why Ultralytics would drop an image (its ``check_image`` rule), or None when it opens.

    The image is opened with PIL and ``verify()``-ed (headers and, for PNG, chunk checksums; pixels are not
    decoded), and must be at least 10 x 10 pixels in a format Ultralytics reads.
    """
    from PIL import Image
    from ultralytics.data.utils import IMG_FORMATS
    from ultralytics.utils import patches

    # Ultralytics patches Image.open to pip-check (and, if allowed, install) a HEIF plugin at every file PIL cannot
    # identify; Pillow's own open is used for everything but HEIF files, which need that plugin anyway.
    is_heif = Path(path).suffix.lower() in {".heic", ".heif"}
    image_open = Image.open if is_heif else getattr(patches, "_image_open", Image.open)
    try:
        with image_open(path) as im:
            im.verify()
            width, height = im.size
            fmt = (im.format or "").lower()
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError, ...)
        text = str(e).splitlines()[0][:80] if str(e).strip() else type(e).__name__
        return f"cannot be read as an image ({text})"
    if width < 10 or height < 10:
        return f"is {width}x{height} pixels, Ultralytics needs at least 10x10"
    if fmt not in IMG_FORMATS | {"jpeg2000"}:
        return f"is a {fmt or 'unknown'} image, Ultralytics reads {', '.join(sorted(IMG_FORMATS))}"
    if fmt in {"jpg", "jpeg"} and _jpeg_truncated(path):
        return _TRUNCATED_JPEG
    return None


def check_images(data_dict: Mapping[str, Any], split: str, data: str | Path, sample: int | None = None) -> int:
    """Check that the images of a split open the way Ultralytics' loader opens them.

    Every image is checked with :func:`image_problem` (a header read, no full decode: fast enough for the splits a
    measurement reads, ~1 ms per image). For a large split read only for training, pass ``sample`` to check that
    many images spread evenly over the split; an unreadable image there costs a warning in Ultralytics, not a
    wrong mAP. Any unreadable image is an error: Ultralytics would drop it and its labels, and report the mAP of
    the rest.

    Args:
        data_dict: The dataset dictionary from :func:`check_dataset`.
        split: The split the command will read.
        data: The dataset YAML path, for the message.
        sample: Most images to check (spread evenly), None for all.

    Returns:
        The number of images checked.

    Raises:
        DataError: Naming the split's folder, the first unreadable image, why, and how many are unreadable.
    """
    images = split_images(dict(data_dict), split)
    bad = 0
    first: tuple[Path, str] | None = None
    if sample is not None and 0 < sample < len(images):
        # The images left out of the sample still get the one check that protects the user's files: a truncated
        # JPEG would be rewritten in place by Ultralytics' loader (one seek per file).
        for image in images:
            if image.suffix.lower() in {".jpg", ".jpeg"} and _jpeg_truncated(image):
                bad += 1
                first = first or (image, _TRUNCATED_JPEG)
        images = [images[int(i * len(images) / sample)] for i in range(sample)]
    for image in images:
        problem = image_problem(image)
        if problem is not None:
            bad += 1
            first = first or (image, problem)
    if first is not None:
        image, problem = first
        count = "all" if bad == len(images) else f"{bad} of"
        raise DataError(
            f"{image}: {problem}; {count} {len(images)} images checked in the '{split}' split "
            f"({_split_sources(data_dict, split)}) of {data} are unreadable; replace or remove them"
        )
    return len(images)


# --------------------------------------------------------------------------------------------- classes


def class_name_list(names: Any) -> list[str] | None:
    """Class names in class-id order from a ``names`` value (dict ``{id: name}``, list, or None)."""
    if names is None:
        return None
    if isinstance(names, Mapping):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


def _shown(names: Sequence[str]) -> str:
    """A class list cut to its first few names."""
    head = ", ".join(names[:_NAMES_SHOWN])
    return f"[{head}{f', ... {len(names) - _NAMES_SHOWN} more' if len(names) > _NAMES_SHOWN else ''}]"


def check_class_names(model_names: Any, data_names: Any, model: str | Path, data: str | Path) -> None:
    """Check that a model predicts the dataset's classes, in the same order.

    Args:
        model_names: The model's names (``model.names`` of a ``.pt``, the ``names`` of an ONNX file's
            metadata), as dict or list; None when the model does not say (then nothing is checked).
        data_names: The dataset's ``names`` (dict or list).
        model: The model file, for the message.
        data: The dataset YAML, for the message.

    Raises:
        DataError: If the lists differ; the message names the model, both class counts, the first few
            differences and the fix, without quoting long lists whole.
    """
    ours, theirs = class_name_list(model_names), class_name_list(data_names)
    if ours is None or theirs is None or ours == theirs:
        return
    diffs = [
        f"class {i} is '{a}' in the model, '{b}' in the dataset" for i, (a, b) in enumerate(zip(ours, theirs)) if a != b
    ]
    shown = "; ".join(diffs[:_DIFFS_SHOWN]) + (
        f"; ... {len(diffs) - _DIFFS_SHOWN} more" if len(diffs) > _DIFFS_SHOWN else ""
    )
    if len(ours) != len(theirs):
        shown = f"{len(ours)} classes {_shown(ours)} vs {len(theirs)} {_shown(theirs)}" + (
            f"; {shown}" if shown else ""
        )
    raise DataError(
        f"model '{model}' does not predict the classes of dataset '{data}' ({shown}); measure with the "
        f"dataset the model was trained on, or a model trained on this one"
    )
