"""Helpers the test modules of every folder import (``from yoloslim_test_support import run_cli``).

The root ``conftest.py`` puts ``tests/`` on ``sys.path`` and holds the shared fixtures (``tiny_data``,
``tiny_ckpt``, ``plugin_site``); a module named ``conftest`` cannot be imported reliably when pytest collects
several test folders, so the plain functions live here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "weights" / "student_yolov8n.pt"
TEACHER = ROOT / "weights" / "teacher_yolov8s.pt"


def load_script(path: Path):
    """Import a script of a folder that is not a package (``datasets/``, ``weights/``) as a module of its stem."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


def load_generator():
    """Import datasets/synth_shapes.py."""
    return load_script(ROOT / "datasets" / "synth_shapes.py")


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


def assert_one_line_error(result, *words: str, status: int = 1) -> str:
    """Assert a finished ``run_cli`` result failed the way bad input must: ``status``, one stderr line, no traceback.

    Ultralytics and plugins may log on stderr before the error; the last line is the ``yoloslim: ...`` one and
    must contain every one of ``words`` (case-insensitive). Returns that line.
    """
    assert result.returncode == status, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    last = lines[-1]
    assert last.startswith("yoloslim: "), last
    assert len(last) < 1000, f"error line of {len(last)} characters"
    for word in words:
        assert word.lower() in last.lower(), (word, last)
    return last


def file_digests(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (files or folders), to prove inputs are byte-identical afterwards."""
    import hashlib

    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def stray_temp_files(folder: Path) -> list[Path]:
    """Temporary files/folders an atomic write or an export leaves when it is not cleaned up."""
    return [p for p in Path(folder).rglob(".*")
            if ".tmp" in p.name or p.name.startswith((".export-", ".engine-"))]


def run_main(*args: str):
    """Run ``yoloslim ARGS`` in this process and return a CompletedProcess like :func:`run_cli`'s.

    No interpreter start-up (torch and Ultralytics are already imported): about 5 s less than :func:`run_cli` on
    2 cores. For commands that fail before any work; anything that trains or must run in a clean process (signals,
    environment) goes through :func:`run_cli`.
    """
    import contextlib
    import io
    import subprocess

    from yoloslim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as e:  # argparse
            status = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())
