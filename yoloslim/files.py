"""Atomic file writes: a temporary file beside the destination, then a rename, so no reader sees half a file.

A temporary name carries its writer's PID (``.<name>.<pid>.<random>.tmp``), so the temporaries a killed process left
behind are recognised and removed by the next write to the same folder (:func:`remove_stale_temp`). New files get the
mode a plain ``open()`` would give them, and nothing is renamed into place after SIGINT/SIGTERM
(:mod:`yoloslim.signals`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file: 0644 under the usual umask


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (when in doubt, yes: a live writer keeps its files)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. someone else's live process
        return True
    return True


def remove_stale_temp(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove temporary files that an atomic write of a killed process left in ``folder``.

    A temporary name carries its writer's PID (``.<name>.<pid>.<random>.tmp``); those of a PID that no longer runs
    are removed. ``name`` limits the cleanup to the temporaries of one destination.

    Returns:
        The paths removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".{glob.escape(name) if name else '*'}.*.tmp"):
        pid = p.name[: -len(".tmp")].split(".")[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    The file gets the mode a plain ``open()`` would (``0666`` less the umask). Temporaries a killed process left for
    the same destination are removed first. After SIGINT/SIGTERM nothing is renamed into place.
    """
    from yoloslim import signals

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _MODE)
        signals.check()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file beside ``dst`` and a rename."""
    return atomic_write_bytes(dst, Path(src).read_bytes())


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
