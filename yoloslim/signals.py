"""SIGINT and SIGTERM end a run at any phase: exit status 130/143, "interrupted", and no output written afterwards.

Ctrl-C raises ``KeyboardInterrupt`` wherever Python happens to be, and a library on the way (an exporter, a
thread pool) may catch and drop it. So the handler also records the signal: :func:`check` raises it again at the
next output write (every atomic write calls it before the rename), and the CLI ends with the signal's status even
if the exception itself was swallowed somewhere.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received: int | None = None
_depth = 0


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``.signum``); a KeyboardInterrupt, so code that cleans up on Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def handled(reraise: bool = True) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as :class:`Interrupted` for the duration of a block, then restore what was there.

    A signal that arrives inside the block ends it with :class:`Interrupted`, even if code inside caught and dropped
    the exception (Ultralytics' ``TryExcept`` does, around its requirement checks): the block then raises it on the
    way out. Blocks nest (the CLI around a command, an exporter around Ultralytics' export); the record of the signal
    is cleared when the outermost ends. Outside the main thread (where Python cannot set handlers) it only yields.

    Args:
        reraise: Raise a swallowed interrupt on the way out; ``False`` for a caller that reads :func:`received`
            itself (the CLI, which has already reported it).
    """
    global _received, _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _depth += 1
    try:
        yield
        if reraise:
            check()
    finally:
        _depth -= 1
        for s, h in previous.items():
            signal.signal(s, h)
        if _depth == 0:
            _received = None


def received() -> int | None:
    """The signal that interrupted this process, if any."""
    return _received


def check() -> None:
    """Raise :class:`Interrupted` again if a signal arrived, even if its first exception was swallowed."""
    if _received is not None:
        raise Interrupted(_received)


def signum_of(e: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: its own, the one recorded, or SIGINT (a plain KeyboardInterrupt is Ctrl-C)."""
    return getattr(e, "signum", None) or received() or signal.SIGINT


def exit_status(signum: int) -> int:
    """The shell's status for a process ended by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)
