"""The fixtures and hooks of the ``yoloslim`` pytest plugin (documented in :mod:`yoloslim.testing`, which imports them).

Importing this module has no side effects; the environment settings are applied by the hooks, once per pytest run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from yoloslim.testing.helpers import run_main, train_tiny

#: Set (when unset) before any test module is imported: Ultralytics offline and without run-time pip installs.
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
#: Config folders pointed (when unset) at one temporary folder per run, removed when the run ends.
CONFIG_DIRS = {"YOLO_CONFIG_DIR": "ultralytics", "MPLCONFIGDIR": "mpl"}

_APPLIED = pytest.StashKey[bool]()

#: ``tiny_ckpt_any`` parameter -> the fixture it stands for.
_GENERATIONS = {"yolov8n": "tiny_ckpt", "yolo11n": "tiny_ckpt_yolo11", "yolo26n": "tiny_ckpt_yolo26"}


def _apply_environment(config: pytest.Config) -> None:
    """Set the offline settings that are not set yet; undo exactly those (and drop the temp folder) at the end."""
    if config.stash.get(_APPLIED, False):
        return
    config.stash[_APPLIED] = True
    added: dict[str, str] = {}
    for key, value in OFFLINE_ENV.items():
        if key not in os.environ:
            added[key] = os.environ.setdefault(key, value)
    missing = [key for key in CONFIG_DIRS if key not in os.environ]
    if missing:
        tmp = Path(tempfile.mkdtemp(prefix="yoloslim-pytest-cfg-"))
        for key in missing:
            added[key] = os.environ.setdefault(key, str(tmp / CONFIG_DIRS[key]))
        config.add_cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))

    def restore() -> None:
        for key, value in added.items():
            if os.environ.get(key) == value:
                del os.environ[key]

    config.add_cleanup(restore)  # runs before the folder removal (cleanups run last-in, first-out)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Apply the environment settings before the initial conftest files (and any test module) are imported."""
    _apply_environment(early_config)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Apply the environment settings when the plugin was registered too late for the hook above (a no-op then)."""
    _apply_environment(config)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.yaml of the synthetic shapes dataset's ``tiny`` variant (seed 0), generated once per session."""
    # Imported here, not at the top: `python -m yoloslim.testing.synth_shapes` imports this package first.
    from yoloslim.testing import synth_shapes

    return synth_shapes.generate(tmp_path_factory.mktemp("tiny"), variant="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A YOLOv8n trained for one epoch on the tiny data at 64 px, as Ultralytics saves it."""
    return train_tiny(tiny_data, tmp_path_factory.mktemp("tiny-train-yolov8n"), "yolov8n.yaml")


@pytest.fixture(scope="session")
def tiny_ckpt_yolo11(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A YOLO11n (C3k2, C2PSA attention) trained one epoch on the tiny data at 64 px."""
    return train_tiny(tiny_data, tmp_path_factory.mktemp("tiny-train-yolo11n"), "yolo11n.yaml")


@pytest.fixture(scope="session")
def tiny_ckpt_yolo26(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A YOLO26n (NMS-free one-to-one head, reg_max 1, one-to-many training branch) trained one epoch at 64 px."""
    return train_tiny(tiny_data, tmp_path_factory.mktemp("tiny-train-yolo26n"), "yolo26n.yaml")


@pytest.fixture(scope="session", params=list(_GENERATIONS))
def tiny_ckpt_any(request: pytest.FixtureRequest) -> Path:
    """Each generation's tiny checkpoint in turn (YOLOv8, YOLO11, YOLO26; test ids ``yolov8n``, ...)."""
    return request.getfixturevalue(_GENERATIONS[request.param])


@pytest.fixture(scope="session")
def yoloslim_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``yoloslim ARGS`` in this process: ``yoloslim_cli("compress", "--help").returncode`` (see ``run_main``)."""
    return run_main
