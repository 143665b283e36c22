"""Where a command writes: never over an input, only where it can, and run directories no two runs share.

Every command checks its outputs before any work: an output that is, or contains, one of its inputs is refused
(nothing the user passed in is ever modified), and so is one whose folder cannot be written or lacks the space for
the first file. A run directory is created atomically (``mkdir`` that fails when the name exists, then the next
name), carries a ``.yoloslim-run`` marker, and is locked by the process that uses it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from yoloslim.errors import StorageError, YoloslimError
from yoloslim.files import pid_alive, remove_stale_temp

MARKER = ".yoloslim-run"
LOCK = ".yoloslim-run.lock"
# What a run writes into its directory: stage folders (NN_name), the original's baselines, the report.
_RUN_OUTPUT = re.compile(r"^(\d\d_.+|report\.(md|json)|pareto\.png)$")


class OutputError(YoloslimError):
    """An output path would overwrite an input, or is unusable (a folder where a file is expected, in use)."""


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_file(out: str | Path, inputs: list[str | Path], what: str = "--out") -> Path:
    """Refuse an output file that is one of ``inputs``, is a folder, or sits where nothing can be written.

    Args:
        out: The output file path the user gave.
        inputs: Every file and folder the command reads (models, dataset YAML, recipe, teacher).
        what: The flag named in the error.

    Returns:
        ``out`` as given.

    Raises:
        OutputError: If ``out`` is an input or an existing folder.
        StorageError: If its folder cannot be created or written.
    """
    target = _resolved(out)
    for i in inputs:
        if _same_file(target, _resolved(i)):
            raise OutputError(
                f"{what} '{out}' is an input of this command and would be overwritten; write the output to another path"
            )
    if target.is_dir():
        raise OutputError(f"{what} '{out}' is a folder; pass a file name, e.g. {Path(out) / 'model.pt'}")
    check_writable_folder(target.parent, what)
    return Path(out)


def check_output_dir(out: str | Path, inputs: list[str | Path], what: str = "--out") -> Path:
    """Refuse an output folder that is, or contains, one of ``inputs``, or sits where nothing can be written.

    Raises:
        OutputError: If ``out`` is an input, contains one, or is an existing file.
        StorageError: If it cannot be created or written.
    """
    target = _resolved(out)
    for i in inputs:
        src = _resolved(i)
        if _same_file(target, src) or target in src.parents:
            raise OutputError(
                f"{what} '{out}' contains '{i}', an input of this command, which the run could "
                f"overwrite; choose a run folder that holds none of the inputs"
            )
    if target.exists() and not target.is_dir():
        raise OutputError(f"{what} '{out}' is a file; pass a folder for the run's outputs")
    check_writable_folder(target, what)
    return Path(out)


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest parent that does."""
    while not path.exists():
        path = path.parent
    return path


def check_writable_folder(folder: str | Path, what: str = "--out") -> None:
    """Raise StorageError unless ``folder`` exists and is writable, or could be created in a writable parent."""
    folder = _resolved(folder)
    existing = _existing_ancestor(folder)
    if not existing.is_dir():
        raise StorageError(f"{what}: cannot create '{folder}': '{existing}' is a file; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(
            f"{what}: '{existing}' is not writable (permission denied or a read-only file system); "
            f"choose a writable path"
        )


def check_free_space(folder: str | Path, needed: int, what: str = "--out") -> None:
    """Raise StorageError when the disk of ``folder`` has less than ``needed`` bytes free (a cheap estimate)."""
    existing = _existing_ancestor(_resolved(folder))
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise StorageError(
            f"{what}: only {free / 2**20:.0f} MiB free on the disk of '{existing}', about "
            f"{needed / 2**20:.0f} MiB needed; free some space or choose another disk"
        )


def _take_lock(folder: Path) -> Path:
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and pid_alive(pid):
                raise OutputError(
                    f"run directory '{folder}' is in use by a running yoloslim (process {pid}); "
                    f"wait for it or choose another --out"
                ) from None
            lock.unlink(missing_ok=True)  # left by a killed run
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise OutputError(f"run directory '{folder}' is being taken by another yoloslim; choose another --out")


def _clean_previous_run(folder: Path) -> list[Path]:
    """Remove what an earlier run wrote into ``folder`` (stage folders, report, stale temporaries)."""
    removed = []
    for p in folder.iterdir():
        if _RUN_OUTPUT.match(p.name):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    removed += remove_stale_temp(folder)
    return removed


@contextlib.contextmanager
def run_directory(out: str | Path | None, default: str | Path) -> Iterator[Path]:
    """Create or take over a run directory for the duration of a run, locked against concurrent runs.

    Args:
        out: The folder the user named, or ``None`` for a new one under ``default``.
        default: The default name (``runs/slim/<recipe>``); when it exists, ``<default>2``, ``<default>3``, ... —
            each created with an exclusive ``mkdir``, so two runs started together never share one.

    A named folder that exists is reused only if an earlier yoloslim run made it (it has the ``.yoloslim-run``
    marker, or the ``report.json`` of a run from before the marker) and no running process holds it: the earlier
    run's stage folders and report are removed first, so the folder never mixes two runs. Any other non-empty
    folder is refused.

    Yields:
        The run directory (as a path relative to where it was named).

    Raises:
        OutputError: If a named folder is in use, or is non-empty and not a yoloslim run directory.
    """
    if out is None:
        base = Path(default)
        base.parent.mkdir(parents=True, exist_ok=True)
        i = 1
        while True:
            folder = base if i == 1 else Path(f"{base}{i}")
            try:
                folder.mkdir()
                break
            except FileExistsError:
                i += 1
    else:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(folder)
    try:
        marker = folder / MARKER
        others = [p for p in folder.iterdir() if p.name not in (LOCK, MARKER)]
        ours = marker.exists() or (folder / "report.json").is_file()  # report.json: a run from before the marker
        if others and not ours:
            raise OutputError(
                f"--out '{folder}' already holds files that no yoloslim run wrote; pass a new or "
                f"empty folder (yoloslim would mix its outputs with them)"
            )
        if others:
            _clean_previous_run(folder)
        marker.touch()
        yield folder
    finally:
        lock.unlink(missing_ok=True)
