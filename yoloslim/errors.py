"""Exception types of yoloslim.

Every error that bad input can cause is one of these, raised where the input is first seen, with a
message that names the input and the fix. The CLI prints ``str(error)`` on one line and exits
non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def cut(text: str, limit: int = 200) -> str:
    """``text`` on one line (when it spans lines), at most ``limit`` characters: a user value quoted in a message."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to a length that fits in a one-line error message (at most 200 characters)."""
    return cut(_REPR.repr(value))


class YoloslimError(Exception):
    """Base class of every user-facing yoloslim error."""


class ModelError(YoloslimError):
    """A checkpoint or model file is missing, corrupt, or not a detection model."""


class DataError(YoloslimError):
    """A dataset YAML or its images/labels are missing or malformed."""


class RecipeError(YoloslimError):
    """A recipe file is missing, malformed, or names an unknown stage, key or wrong type."""


class PluginError(YoloslimError):
    """A plugin failed to load, is missing for a stage, or raised inside a hook."""


class ExportError(YoloslimError):
    """No plugin can export to the requested format, or the export failed."""


class StorageError(YoloslimError):
    """Writing a file failed because the disk is full, read-only, or not writable by this user."""


def one_line(error: BaseException) -> str:
    """Return the first non-empty line of an exception's message (Ultralytics' messages span lines and emojis).

    Args:
        error: Any exception, typically one raised by Ultralytics, torch or PyYAML.

    Returns:
        The first non-empty line, stripped; the exception's type name when the message is empty.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


_STORAGE_ERRNOS = {
    "ENOSPC": "no space left on device",
    "EROFS": "read-only file system",
    "EACCES": "permission denied",
    "EPERM": "permission denied",
    "EDQUOT": "disk quota exceeded",
}
# Text of errors that wrap a failed write without its errno (torch.save's zip writer, C++ streams).
_STORAGE_TEXT = (
    ("no space left on device", "no space left on device"),
    ("disk quota exceeded", "disk quota exceeded"),
    ("read-only file system", "read-only file system"),
    ("file write failed", "a file write failed (most often: no space left on device)"),
    ("failed writing file", "a file write failed (most often: no space left on device)"),
)


def storage_error(exc: BaseException) -> StorageError | None:
    """Return a :class:`StorageError` if ``exc`` (or an exception it wraps) is a failed write, else ``None``.

    Recognises ``OSError`` with errno ENOSPC, EROFS, EACCES, EPERM or EDQUOT anywhere in the ``__cause__`` /
    ``__context__`` chain, and wrapped failures known by their text (torch's ``PytorchStreamWriter failed writing
    file ... file write failed``). The message says what happened, names the path when known, and the fix.
    """
    import errno

    by_number = {getattr(errno, name): what for name, what in _STORAGE_ERRNOS.items() if hasattr(errno, name)}
    seen: set[int] = set()
    what, path, e = None, None, exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in by_number:
            what, path = by_number[e.errno], e.filename
            break
        text = str(e).lower()
        if what is None:
            what = next((w for needle, w in _STORAGE_TEXT if needle in text), None)
        e = e.__cause__ or e.__context__
    if what is None:
        return None
    where = f": '{path}'" if path else ""
    if "space" in what or "quota" in what or "write failed" in what:
        fix = "free some space on that disk, or choose an --out/--run-dir on another disk"
    else:
        fix = "choose a writable --out/--run-dir, or fix the permissions of that folder"
    return StorageError(f"{what}{where}; {fix}")
