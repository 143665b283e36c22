"""Fixtures shared by every test folder (tests/, plugins/*/tests, deploy/tests): offline Ultralytics, the tiny
generated dataset, a tiny trained checkpoint, and a site folder with the test plugin packages installed.

Session-scoped fixtures defined here are built once per pytest run, whichever folders run. Plain helpers live
in ``tests/yoloslim_test_support.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports Ultralytics: offline, no run-time pip installs, private config dirs.
_CFG = Path(tempfile.mkdtemp(prefix="yoloslim-test-cfg-"))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ["YOLO_AUTOINSTALL"] = "0"
os.environ.setdefault("YOLO_CONFIG_DIR", str(_CFG / "ultralytics"))
os.environ.setdefault("MPLCONFIGDIR", str(_CFG / "mpl"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import pytest  # noqa: E402
from yoloslim_test_support import ROOT, load_generator  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """data.yaml of the tiny variant of the bundled dataset (generated once per session)."""
    return load_generator().generate(tmp_path_factory.mktemp("tiny"), variant="tiny", seed=0)


def _train_tiny(tmp_path_factory, data: Path, yaml_name: str) -> Path:
    """A model built from an Ultralytics YAML, trained one epoch on the tiny data at 64 px, as Ultralytics saves it."""
    from ultralytics import YOLO

    out = tmp_path_factory.mktemp(f"tiny-train-{Path(yaml_name).stem}")
    model = YOLO(yaml_name)
    model.train(data=str(data), epochs=1, imgsz=64, batch=8, device="cpu", workers=0, plots=False,
                project=str(out), name="t", exist_ok=True, val=False, verbose=False, seed=0, amp=False)
    return out / "t" / "weights" / "last.pt"


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_data) -> Path:
    """A yolov8n trained for one epoch on the tiny data at 64 px, as Ultralytics saves it."""
    return _train_tiny(tmp_path_factory, tiny_data, "yolov8n.yaml")


@pytest.fixture(scope="session")
def tiny_ckpt_yolo11(tmp_path_factory, tiny_data) -> Path:
    """A YOLO11n (C3k2, C2PSA attention) trained one epoch on the tiny data at 64 px."""
    return _train_tiny(tmp_path_factory, tiny_data, "yolo11n.yaml")


@pytest.fixture(scope="session")
def tiny_ckpt_yolo26(tmp_path_factory, tiny_data) -> Path:
    """A YOLO26n (NMS-free one-to-one head, reg_max 1, one-to-many training branch) trained one epoch at 64 px."""
    return _train_tiny(tmp_path_factory, tiny_data, "yolo26n.yaml")


@pytest.fixture(scope="session", params=["yolov8n", "yolo11n", "yolo26n"])
def tiny_ckpt_any(request) -> Path:
    """Each generation's tiny checkpoint in turn (YOLOv8, YOLO11, YOLO26)."""
    name = {"yolov8n": "tiny_ckpt", "yolo11n": "tiny_ckpt_yolo11", "yolo26n": "tiny_ckpt_yolo26"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """A folder where the test plugin packages are pip-installed, as a user would install them."""
    import shutil
    import subprocess

    site = tmp_path_factory.mktemp("site")
    for name in ("testplug", "brokenplug"):
        src = tmp_path_factory.mktemp(f"src-{name}") / name
        shutil.copytree(ROOT / "tests" / "assets" / name, src)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(site), str(src)], check=True)
    return site
