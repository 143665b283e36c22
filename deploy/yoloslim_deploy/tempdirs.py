"""Private work folders of the export adapters, named after the process that owns them, and removal of stale ones.

An export works in a hidden folder beside its output (``.export-<pid>-xxxx``, ``.engine-<pid>-xxxx``) and renames
the finished file into place; the folder is removed on every exit the process survives. A process killed outright
(SIGKILL, power loss) cannot remove it, so the next export into the same folder removes every such folder whose
process is no longer running. Folders of the older, PID-less naming (``.export-xxxx``) are removed once they are a
day old. The PID check assumes one machine: a folder shared by several machines over a network file system may hold
a live export of another machine whose PID happens to be free here, which is why only ``.export-``/``.engine-``
folders are ever touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from yoloslim import pid_alive

LOGGER = logging.getLogger("yoloslim.deploy")

LEGACY_MAX_AGE_S = 24 * 3600


def export_workdir(folder: Path, prefix: str) -> tempfile.TemporaryDirectory:
    """Remove stale work folders named ``<prefix>*`` in ``folder``, then return a new one for this process.

    Args:
        folder: Where the export writes its output (the work folder goes beside it, on the same file system, so
            the finished file can be renamed into place).
        prefix: ``".export-"`` or ``".engine-"``.

    Returns:
        A :class:`tempfile.TemporaryDirectory` named ``<prefix><pid>-xxxx``; use it as a context manager.
    """
    folder = Path(folder)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    for leftover in folder.glob(f"{prefix}*"):
        if not leftover.is_dir() or leftover.is_symlink():
            continue
        owner = pattern.match(leftover.name)
        try:
            stale = (
                not pid_alive(int(owner.group(1)))
                if owner
                else time.time() - leftover.stat().st_mtime > LEGACY_MAX_AGE_S
            )
        except (OSError, ValueError, OverflowError):
            continue
        if stale:
            LOGGER.info("removing %s, left by an export that was killed", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
    return tempfile.TemporaryDirectory(dir=folder, prefix=f"{prefix}{os.getpid()}-")
