"""Test support for yoloslim and its plugins: a pytest plugin with ready-made fixtures, plain helpers, and the
synthetic shapes dataset.

Installing yoloslim registers this module as the pytest plugin ``yoloslim`` (entry point group ``pytest11``), so a
plugin repository's tests use the fixtures below by naming them; no conftest.py, no ``pytest_plugins`` line::

    # tests/test_my_stage.py of a third-party plugin
    from yoloslim.testing import assert_one_line_error


    def test_stage_runs(tiny_ckpt, tiny_data, tmp_path):
        ...  # tiny_ckpt: a trained .pt, tiny_data: its data.yaml


    def test_missing_recipe_is_one_line(yoloslim_cli, tiny_ckpt, tiny_data, tmp_path):
        result = yoloslim_cli("compress", str(tiny_ckpt), "--data", str(tiny_data), "--recipe",
                              str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out"))
        assert_one_line_error(result, "missing.yaml", "not found")

``pytest --fixtures`` lists them; ``pytest -p no:yoloslim`` turns the plugin off. A fixture of the same name in a
conftest.py or test module takes precedence over the plugin's.

Fixtures (all session-scoped: built once per pytest run, on first use, in pytest's temporary folder; costs measured
on 2 CPU cores):

- ``tiny_data`` -> ``Path``: the ``data.yaml`` of the synthetic shapes dataset's ``tiny`` variant, seed 0 (8
  classes, 80 px PNGs, 32 train / 16 val / 16 test images; absolute ``path:``). Under a second; no Ultralytics.
- ``tiny_ckpt`` -> ``Path``: a YOLOv8n built from ``yolov8n.yaml`` and trained one epoch on ``tiny_data`` at 64 px
  on the CPU, the ``last.pt`` as Ultralytics saves it (so its accuracy is near zero: it is a real, loadable
  checkpoint, not a good detector). A few seconds, plus Ultralytics' import the first time.
- ``tiny_ckpt_yolo11`` / ``tiny_ckpt_yolo26`` -> ``Path``: the same for YOLO11n (C3k2, C2PSA attention) and YOLO26n
  (NMS-free one-to-one head, reg_max 1). A few seconds each.
- ``tiny_ckpt_any`` -> ``Path``: parametrized over the three above (test ids ``yolov8n``, ``yolo11n``, ``yolo26n``):
  a test that takes it runs once per generation and triggers all three trainings.
- ``yoloslim_cli`` -> callable: ``yoloslim_cli(*args)`` runs ``yoloslim ARGS`` in this process
  (:func:`yoloslim.cli.main`) and returns a ``subprocess.CompletedProcess`` with ``returncode``, ``stdout`` and
  ``stderr`` (see :func:`run_main`). Free; use a subprocess for runs that must start from a clean process.

Plain helpers (importable without pytest): :func:`run_main`, :func:`assert_one_line_error` (a failed run ended with
one ``yoloslim: ...`` line and no traceback), :func:`file_digests` (SHA-256 of files, to prove inputs unchanged),
:func:`train_tiny` (how the ``tiny_ckpt*`` fixtures are trained, for other model YAMLs), and the dataset generator
:mod:`yoloslim.testing.synth_shapes` (``generate(out_dir, variant="tiny", seed=0) -> data.yaml``; also
``python -m yoloslim.testing.synth_shapes --variant full``).

Environment. The plugin is loaded by every pytest run in an environment where yoloslim is installed, so it only
fills in what is unset, before the first conftest or test module is imported (hook ``pytest_load_initial_conftests``,
or ``pytest_configure`` when the plugin is registered later), and undoes exactly that when the run ends:

- ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0``: Ultralytics downloads nothing and pip-installs nothing at run time;
- ``YOLO_CONFIG_DIR``, ``MPLCONFIGDIR``: one temporary folder per run (removed at the end), so Ultralytics' and
  matplotlib's settings and caches in the user's home are neither read nor written.

Variables already set (by the user, CI or an outer pytest run) are left alone. Importing this package sets nothing.
"""

from __future__ import annotations

from yoloslim.testing.helpers import assert_one_line_error, file_digests, run_main, train_tiny

__all__ = ["assert_one_line_error", "file_digests", "run_main", "train_tiny"]

try:  # pytest is a development dependency: without it the helpers and synth_shapes still import.
    import pytest  # noqa: F401
except ImportError:  # pragma: no cover - exercised only in an environment without pytest
    pass
else:  # The plugin's fixtures and hooks must be names of this module, the one the entry point registers.
    from yoloslim.testing.plugin import (  # noqa: F401
        pytest_configure,
        pytest_load_initial_conftests,
        tiny_ckpt,
        tiny_ckpt_any,
        tiny_ckpt_yolo11,
        tiny_ckpt_yolo26,
        tiny_data,
        yoloslim_cli,
    )
