"""Fixtures of the pruning tests: the project's ``tiny_data`` and ``tiny_ckpt`` (see :mod:`prune_helpers`)."""

from __future__ import annotations

from prune_helpers import shared

# Fixtures are scoped to their folder: the project's fixtures are registered again for this one.
tiny_data = shared.tiny_data
tiny_ckpt = shared.tiny_ckpt
