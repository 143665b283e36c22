"""SIGINT and SIGTERM end a run at any phase: exit status 130/143, "interrupted", and no output written afterwards.

Ctrl-C raises ``KeyboardInterrupt`` wherever Python happens to be, and a library on the way (an exporter, a
thread pool) may catch and drop it. So the handler also records the signal: :func:`check` raises it again at the
next output write (every atomic write calls it before the rename), and the CLI ends with the signal's status even
if the exception itself was swallowed somewhere.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_received: int | None = None


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``.signum``); a KeyboardInterrupt, so code that cleans up on Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def received() -> int | None:
    """The signal that interrupted this process, if any."""
    return _received


def check() -> None:
    """Raise :class:`Interrupted` again if a signal arrived, even if its first exception was swallowed."""
    if _received is not None:
        raise Interrupted(_received)


def exit_status(signum: int) -> int:
    """The shell's status for a process ended by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)
