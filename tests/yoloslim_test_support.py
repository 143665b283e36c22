"""Helpers the test modules of every folder import (``from yoloslim_test_support import run_cli``).

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml. The shared fixtures (``tiny_data``,
``tiny_ckpt``, ``yoloslim_cli``, ...) come from the ``yoloslim`` pytest plugin (:mod:`yoloslim.testing`), and
``plugin_site`` from the root ``conftest.py``; a module named ``conftest`` cannot be imported reliably when pytest
collects several test folders, so the plain functions live here. The helpers a plugin repository needs too
(``run_main``, ``assert_one_line_error``, ``file_digests``) are :mod:`yoloslim.testing`'s, re-exported here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from yoloslim.testing import assert_one_line_error, file_digests, run_main

__all__ = [
    "ROOT",
    "STUDENT",
    "TEACHER",
    "assert_one_line_error",
    "file_digests",
    "load_script",
    "run_cli",
    "run_main",
    "stray_temp_files",
    "subprocess_env",
]

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "weights" / "student_yolov8n.pt"
TEACHER = ROOT / "weights" / "teacher_yolov8s.pt"


def load_script(path: Path):
    """Import a script of a folder that is not a package (``datasets/``, ``research/``) as a module of its stem."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


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

    return subprocess.run(
        [sys.executable, "-m", "yoloslim.cli", *args],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        cwd=cwd,
    )


def stray_temp_files(folder: Path) -> list[Path]:
    """Temporary files/folders an atomic write or an export leaves when it is not cleaned up."""
    return [p for p in Path(folder).rglob(".*") if ".tmp" in p.name or p.name.startswith((".export-", ".engine-"))]


def pip_install_target(src: Path, site: Path) -> None:
    """Install the package at ``src`` into the folder ``site`` as a user would (``pip install``), offline, no deps."""
    import subprocess

    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*cmd, "--target", str(site), str(src)], check=True)
