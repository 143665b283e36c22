"""Shared fixtures: offline Ultralytics, the tiny generated dataset, a tiny trained checkpoint."""

from __future__ import annotations

import importlib.util
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

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    """Import datasets/synth_shapes.py (``datasets/`` is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("synth_shapes", ROOT / "datasets" / "synth_shapes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("synth_shapes", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """data.yaml of the tiny variant of the bundled dataset (generated once per session)."""
    return load_generator().generate(tmp_path_factory.mktemp("tiny"), variant="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_data) -> Path:
    """A yolov8n trained for one epoch on the tiny data at 64 px, as Ultralytics saves it."""
    from ultralytics import YOLO

    out = tmp_path_factory.mktemp("tiny-train")
    model = YOLO("yolov8n.yaml")
    model.train(data=str(tiny_data), epochs=1, imgsz=64, batch=8, device="cpu", workers=0, plots=False,
                project=str(out), name="t", exist_ok=True, val=False, verbose=False, seed=0, amp=False)
    return out / "t" / "weights" / "last.pt"


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


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child process: this one's, offline, with ``extra`` (PYTHONPATH is prepended)."""
    env = dict(os.environ)
    if "PYTHONPATH" in extra:
        extra["PYTHONPATH"] = os.pathsep.join(filter(None, [extra["PYTHONPATH"], env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``yoloslim ARGS`` in a fresh process and return the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "yoloslim.cli", *args], capture_output=True, text=True,
                          env=env or subprocess_env(), cwd=cwd)
