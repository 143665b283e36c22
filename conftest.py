"""Fixtures of this repository's test folders (tests/, plugins/*/tests, deploy/tests) that a plugin repository
would not need: a site folder with the test plugin packages installed.

The shared fixtures (``tiny_data``, ``tiny_ckpt``, ``tiny_ckpt_yolo11``, ``tiny_ckpt_yolo26``, ``tiny_ckpt_any``,
``yoloslim_cli``) and the offline Ultralytics settings come from the ``yoloslim`` pytest plugin
(:mod:`yoloslim.testing`), which installing yoloslim registers. Plain helpers of this repository's tests live in
``tests/yoloslim_test_support.py`` (``tests/`` and ``bench/`` are on ``sys.path`` through ``pythonpath`` in
pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from yoloslim_test_support import ROOT, pip_install_target

# The plugin only fills in unset variables; this repository's tests never pip-install at run time, whatever the shell
# says. Set at conftest import, before any test module imports Ultralytics.
os.environ["YOLO_AUTOINSTALL"] = "0"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the test plugin packages are pip-installed, as a user would install them."""
    import shutil

    site = tmp_path_factory.mktemp("site")
    for name in ("testplug", "brokenplug"):
        src = tmp_path_factory.mktemp(f"src-{name}") / name
        shutil.copytree(ROOT / "tests" / "assets" / name, src)
        pip_install_target(src, site)
    return site
