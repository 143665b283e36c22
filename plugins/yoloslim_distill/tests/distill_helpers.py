"""Helpers of the distillation tests (imported by name: ``conftest`` is ambiguous when pytest runs several test folders).

The project's shared fixtures and helpers live in ``tests/conftest.py``; it is loaded here under its own name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
_NAME = "yoloslim_tests_conftest"
if _NAME in sys.modules:
    shared = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, ROOT / "tests" / "conftest.py")
    shared = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = shared
    _spec.loader.exec_module(shared)

run_cli = shared.run_cli
subprocess_env = shared.subprocess_env
