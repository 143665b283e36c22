"""Which checkpoints yoloslim unpickles, and how: safe by default, trusted only when the user says so.

A ``.pt`` checkpoint is a pickle: loading it the ordinary way runs whatever code the file names. yoloslim loads
every checkpoint with ``torch.load(weights_only=True)`` against an allowlist of exactly what a detection checkpoint
holds:

- the classes Ultralytics' own restricted loader accepts (``ultralytics.nn.tasks.torch_safe_load(safe_only=True)``:
  torch and Ultralytics ``nn.Module`` classes, the loss and assigner classes, ``IterableSimpleNamespace``, paths,
  NumPy scalars);
- the classes yoloslim's plugins declare through ``yoloslim_checkpoint_classes`` (e.g. the prune plugin's
  ``SplitC2f``), so yoloslim's own pruned, distilled and QAT checkpoints load without any opt-in.

A checkpoint that needs anything else is refused with one line naming the global it wanted. The opt-in, for a file
whose origin the user trusts, is ``--trust-checkpoint`` on the command line, ``trust=True`` in the Python API, or
``YOLOSLIM_TRUST_CHECKPOINTS=1`` in the environment.

Ultralytics loads checkpoints itself too (its validator, exporter and trainer). Inside :func:`trust_scope` those
loads are restricted the same way (Ultralytics' ``ULTRALYTICS_SAFE_LOAD`` switch, turned on for the scope), so no
path through yoloslim unpickles an untrusted file.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator
from typing import Any

import torch

ENV_VAR = "YOLOSLIM_TRUST_CHECKPOINTS"
OPT_IN = f"--trust-checkpoint (API: trust=True, or {ENV_VAR}=1)"

_SCOPE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("yoloslim_trust", default=None)


def trusted(trust: bool | None = None) -> bool:
    """Whether checkpoints may be unpickled without the allowlist.

    Args:
        trust: An explicit choice (the API's ``trust=``); ``None`` defers to the enclosing :func:`trust_scope`, then
            to the ``YOLOSLIM_TRUST_CHECKPOINTS`` environment variable (``1``/``true``/``yes``).
    """
    if trust is not None:
        return bool(trust)
    scoped = _SCOPE.get()
    if scoped is not None:
        return scoped
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def allow_plugin_classes(plugins: Any = None) -> list[type]:
    """Add the classes the loaded plugins declare (``yoloslim_checkpoint_classes``) to torch's safe globals.

    torch's allowlist is a process-wide set, so Ultralytics' own restricted loads accept them too. Idempotent.

    Returns:
        The classes declared.
    """
    if plugins is None:
        from yoloslim.plugins import get_plugin_manager

        plugins = get_plugin_manager()
    from yoloslim.structure import LEGACY_NAMES

    classes = [c for group in plugins.call("yoloslim_checkpoint_classes") or [] for c in group or []]
    torch.serialization.add_safe_globals([*LEGACY_NAMES, *LEGACY_NAMES.items(), *classes])
    return classes


@contextlib.contextmanager
def trust_scope(trust: bool | None = None, plugins: Any = None) -> Iterator[bool]:
    """Run a block with one trust policy for every checkpoint load, yoloslim's and Ultralytics' alike.

    Untrusted (the default), the plugins' checkpoint classes are allowed and Ultralytics' ``SAFE_LOAD`` switch is on,
    so its validator, exporter and trainer load with ``weights_only=True`` as well. Trusted, Ultralytics loads as it
    always does, and ``YOLOSLIM_TRUST_CHECKPOINTS=1`` is set so that subprocesses (multi-GPU ranks) trust alike. The
    previous state is restored on exit.

    Yields:
        Whether the block is trusted.
    """
    from ultralytics.nn import tasks

    is_trusted = trusted(trust)
    if not is_trusted:
        allow_plugin_classes(plugins)
    token = _SCOPE.set(is_trusted)
    previous, previous_env = tasks.SAFE_LOAD, os.environ.get(ENV_VAR)
    tasks.SAFE_LOAD = not is_trusted
    if is_trusted:  # subprocesses (Ultralytics' DDP ranks) inherit the choice
        os.environ[ENV_VAR] = "1"
    try:
        yield is_trusted
    finally:
        tasks.SAFE_LOAD = previous
        if previous_env is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous_env
        _SCOPE.reset(token)


# torch's weights_only unpickler names the global it refused in one of these two sentences.
_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) ([\w.]+)")


def refused_global(error: BaseException) -> str | None:
    """The global a ``weights_only`` load refused (``'posix.system'``), read from the error or its causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        match = _GLOBAL.search(str(error))
        if match:
            return match.group(1)
        error = error.__cause__ or error.__context__
    return None


def load_checkpoint_dict(path: str, trust: bool | None = None) -> dict[str, Any]:
    """Unpickle an Ultralytics checkpoint under the trust policy, through Ultralytics' ``torch_safe_load``.

    Raises:
        UntrustedCheckpoint: If the file needs a global outside the allowlist and is not trusted.
        Exception: Whatever Ultralytics raises for a file that is not a checkpoint (the caller turns it into a
            ModelError).
    """
    from ultralytics.nn import tasks

    if trusted(trust):
        return tasks.torch_safe_load(path, safe_only=False)[0]
    allow_plugin_classes()
    try:
        return tasks.torch_safe_load(path, safe_only=True)[0]
    except Exception as e:
        name = refused_global(e)
        if name is None:
            raise
        raise UntrustedCheckpoint(name) from e


class UntrustedCheckpoint(Exception):
    """A safe load met a global outside the allowlist (``.name``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
