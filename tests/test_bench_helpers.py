"""Helpers of the benchmarks in bench/: export cache keyed on checkpoint bytes, the prune budget's epoch count."""

from __future__ import annotations

import shutil

import pytest
import torch


@pytest.fixture(scope="module")
def bench_modules():
    """bench/runner.py and bench/prune.py, imported on first use (``bench/`` is on ``pythonpath`` in pyproject.toml)."""
    import prune
    import runner

    return runner, prune


def _rewrite(path, **extra):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt.update(extra)
    torch.save(ckpt, path)


def test_export_is_not_reused_after_the_checkpoint_changes(bench_modules, tiny_ckpt, tmp_path):
    runner, _ = bench_modules
    ckpt = tmp_path / "student.pt"
    shutil.copy2(tiny_ckpt, ckpt)
    first = runner.export_onnx(ckpt, 64, tmp_path / "work")
    assert first.is_file()
    stamp = first.stat().st_mtime_ns
    assert runner.export_onnx(ckpt, 64, tmp_path / "work") == first  # same bytes: reused
    assert first.stat().st_mtime_ns == stamp
    _rewrite(ckpt, note="retrained")  # same name, other bytes (a retrained weights/*.pt)
    second = runner.export_onnx(ckpt, 64, tmp_path / "work")
    assert second != first and second.is_file()


def test_training_epochs_follow_the_chain_or_the_recorded_total(bench_modules, tiny_ckpt, tmp_path):
    _, prune = bench_modules
    stage1 = tmp_path / "s1" / "weights" / "best.pt"
    stage2 = tmp_path / "s2" / "weights" / "best.pt"
    for p in (stage1, stage2):
        p.parent.mkdir(parents=True)
        shutil.copy2(tiny_ckpt, p)
    ckpt = torch.load(stage1, map_location="cpu", weights_only=False)
    _rewrite(stage1, train_args={**ckpt["train_args"], "epochs": 30, "model": "yolov8n.yaml"})
    _rewrite(stage2, train_args={**ckpt["train_args"], "epochs": 15, "model": str(stage1)})
    assert prune.student_epochs(stage2) == 45
    _rewrite(stage2, yoloslim_training={"stages": [], "epochs": 90})  # written by research/train_baselines.py
    assert prune.student_epochs(stage2) == 90
