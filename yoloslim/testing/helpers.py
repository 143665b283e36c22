"""Plain helpers of :mod:`yoloslim.testing` (no pytest needed to import them; re-exported by the package)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import subprocess
import sys
from pathlib import Path


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``yoloslim ARGS`` in this process and return a CompletedProcess (``returncode``, ``stdout``, ``stderr``).

    Calls :func:`yoloslim.cli.main` with stdout and stderr redirected, so there is no interpreter start-up (torch
    and Ultralytics stay imported between calls): a few seconds less per call than a subprocess. Meant for commands
    that fail before any work, ``--help`` and other quick commands; a run that trains, or one that must start from a
    clean process (signals, environment variables read at import), belongs in a subprocess. Output written by
    loggers whose handlers hold the real streams (Ultralytics') is not captured.

    Args:
        *args: Command-line arguments after ``yoloslim``.

    Returns:
        The result; ``args`` holds the arguments, ``returncode`` the exit status (``SystemExit`` from argparse or a
        command is turned into its status, as the ``yoloslim`` script would exit).
    """
    from yoloslim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as e:  # argparse, or a command that exits
            if e.code is None or isinstance(e.code, int):
                status = e.code or 0
            else:  # sys.exit("message"): printed on stderr, status 1, as the interpreter does
                print(e.code, file=sys.stderr)
                status = 1
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str, status: int = 1) -> str:
    """Assert a finished CLI run failed the way bad input must: ``status``, one ``yoloslim: ...`` line, no traceback.

    Works on the result of :func:`run_main` (the ``yoloslim_cli`` fixture) and on a ``subprocess.run(...,
    capture_output=True, text=True)`` of the ``yoloslim`` command. Ultralytics and plugins may log on stderr before
    the error; the last non-blank line is the ``yoloslim: ...`` one and must contain every one of ``words``
    (case-insensitive).

    Args:
        result: The finished run.
        *words: Words the error line must contain.
        status: Expected exit status.

    Returns:
        The error line.
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


def file_digests(*paths: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (files or folders), to prove inputs are byte-identical afterwards.

    Args:
        *paths: Files or folders (folders are walked recursively).

    Returns:
        ``{file path: hex digest}``.
    """
    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def train_tiny(data: str | Path, out_dir: str | Path, model_yaml: str = "yolov8n.yaml") -> Path:
    """Build a model from an Ultralytics model YAML and train it one epoch on ``data`` at 64 px on the CPU.

    This is how the ``tiny_ckpt*`` fixtures are made (batch 8, no workers, no plots, seed 0, no AMP); use it for an
    architecture they do not cover. Needs Ultralytics (imported here).

    Args:
        data: A data.yaml, e.g. the ``tiny_data`` fixture's.
        out_dir: Folder for the Ultralytics run (``<out_dir>/t``).
        model_yaml: Ultralytics model YAML (``yolov8n.yaml``, ``yolo11n.yaml``, ``yolo26n.yaml``, ...).

    Returns:
        The run's ``last.pt``, as Ultralytics saves it.
    """
    from ultralytics import YOLO

    out = Path(out_dir).resolve()  # a relative project would land under Ultralytics' own runs folder
    model = YOLO(model_yaml)
    model.train(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=8,
        device="cpu",
        workers=0,
        plots=False,
        project=str(out),
        name="t",
        exist_ok=True,
        val=False,
        verbose=False,
        seed=0,
        amp=False,
    )
    return out / "t" / "weights" / "last.pt"
