"""Latency-aware pruning: latency table, allocation by importance per millisecond, budget search, bad budgets."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from yoloslim import load_checkpoint, make_prunable
from yoloslim.context import SlimContext
from yoloslim.errors import RecipeError
from yoloslim.testing import assert_one_line_error
from yoloslim_prune import prune_channels
from yoloslim_prune.latency import LatencyTable, measure_table, search_latency
from yoloslim_prune.options import STAGE_TYPE

SLOW = "model.8.m.0.cv1.conv"  # a deep bottleneck convolution: few MACs at low resolution


def _student(cfg: str = "yolov8n.yaml") -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=3, verbose=False).eval()
    make_prunable(model)
    return model


def _flat_table(model: nn.Module, slow: str | None = None, factor: float = 50.0) -> dict[str, float]:
    """1 ms per convolution, ``factor`` ms for the ``slow`` one: a model whose time is not where its MACs are."""
    table = {n: 1.0 for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if slow:
        table[slow] = factor
    return table


def _width(model: nn.Module, name: str) -> int:
    return dict(model.named_modules())[name].out_channels


def test_latency_aware_pruner_cuts_the_deliberately_slow_block_hardest():
    base = _student()
    width = _width(base, SLOW)
    cut = {}
    for label, slow in (("flat", None), ("slow", SLOW)):
        model = copy.deepcopy(base)
        prune_channels(
            model, ratio=0.3, importance="l2", global_pruning=True, round_to=None, module_ms=_flat_table(model, slow)
        )
        cut[label] = 1 - _width(model, SLOW) / width
    assert cut["slow"] >= 0.7, cut  # at the cap (max_layer_ratio 0.9): the slow block goes first
    assert cut["slow"] > cut["flat"] + 0.3, cut


def test_latency_allocation_caps_every_group_and_rounds_widths():
    model = _student()
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    prune_channels(
        model,
        ratio=0.5,
        importance="l2",
        global_pruning=True,
        round_to=8,
        max_layer_ratio=0.75,
        module_ms=_flat_table(model, SLOW),
    )
    after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    changed = [n for n in widths if after[n] != widths[n]]
    assert changed
    for n in changed:
        assert after[n] >= widths[n] * 0.25 - 8, (n, widths[n], after[n])  # the cap, less one rounding step
        assert after[n] % 8 == 0, (n, after[n])
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))


def test_latency_table_times_every_convolution_and_the_profile_adds_up(tiny_ckpt: Path, tiny_data: Path):
    model, _ = load_checkpoint(tiny_ckpt)
    model = model.float()
    make_prunable(model)
    table = measure_table(model, SlimContext(imgsz=128, data=str(tiny_data)), "onnx", 128, 1)
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs <= set(table.module_ms), sorted(convs - set(table.module_ms))[:5]
    assert all(t >= 0 for t in table.module_ms.values())
    blocks = sum(r["ms"] for r in table.blocks)
    assert 0.5 * table.total_ms <= blocks <= 1.01 * table.total_ms


def test_budget_search_stops_within_its_tolerance():
    # Latency falls with the ratio as a pruned model's does: a fixed part and a part that shrinks with the channels.
    calls = []

    def latency_at(r: float) -> float:
        calls.append(r)
        return 4.0 + 16.0 * (1 - r) ** 2

    for target in (15.0, 10.0, 6.0):
        calls.clear()
        result = search_latency(latency_at, target, max_ratio=0.9, tolerance=0.05)
        assert target * 0.95 <= result.measured_ms <= target, (target, result)
        assert result.measured_ms == pytest.approx(latency_at(result.ratio))
        assert len(calls) <= 2 + 8 + 1
    already = search_latency(latency_at, 25.0, max_ratio=0.9)
    assert already.ratio == 0.0
    with pytest.raises(RecipeError, match="not reachable"):
        search_latency(latency_at, 3.0, max_ratio=0.9)


def test_budget_on_a_tiny_model_lands_within_the_budget(tiny_ckpt: Path, tiny_data: Path):
    from yoloslim_prune.pruning import prune_once

    model, _ = load_checkpoint(tiny_ckpt)
    model = model.float()
    opts = STAGE_TYPE.parse(
        {"method": "channel", "importance": "l2", "target_latency": "0.7x", "latency_imgsz": 256, "latency_threads": 1},
        0,
        "test",
    )  # l2: data-free, as prune_once gets no calibration batches here
    ctx = SlimContext(imgsz=64, data=str(tiny_data))
    prune_once(model, opts, None, None, 64, None, ctx)
    budget = ctx.state["prune"]["latency"]["budget"]
    assert budget["target_ms"] == pytest.approx(0.7 * budget["reference_ms"], rel=1e-3)
    assert budget["measured_ms"] <= budget["target_ms"]
    assert 0 < budget["ratio"] <= 0.75
    assert len(budget["steps"]) <= 2 + 8


@pytest.mark.parametrize(
    ("value", "words"),
    [("0ms", "milliseconds > 0"), ("-5ms", "milliseconds > 0"), ("1.5x", "(0, 1)"), ("25", "'25ms'")],
)
def test_bad_budget_values_are_one_line_before_any_work(yoloslim_cli, tiny_ckpt, tiny_data, tmp_path, value, words):
    out = tmp_path / "out.pt"
    r = yoloslim_cli("prune", str(tiny_ckpt), "--data", str(tiny_data), "--out", str(out), f"--target-latency={value}")
    assert_one_line_error(r, "target_latency", words, status=2 if "usage" in r.stderr else 1)
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_budget_options_conflict_with_other_targets():
    with pytest.raises(RecipeError, match="not target_macs and target_latency"):
        STAGE_TYPE.parse({"target_macs": 0.5, "target_latency": "10ms"}, 0, "test")
    with pytest.raises(RecipeError, match="target_latency_ms"):
        STAGE_TYPE.parse({"target_latency": "0.5x", "target_latency_ms": 10}, 0, "test")
    with pytest.raises(RecipeError, match="method 'channel'"):
        STAGE_TYPE.parse({"method": "depth", "target_latency": "0.5x"}, 0, "test")
    assert STAGE_TYPE.parse({"target_latency_ms": 12.5}, 0, "test").budget_ms(100.0) == 12.5
    assert STAGE_TYPE.parse({"target_latency": "0.4x"}, 0, "test").budget_ms(50.0) == pytest.approx(20.0)


def test_unreachable_budget_is_one_line_before_any_work(yoloslim_cli, tiny_ckpt, tiny_data, tmp_path):
    out = tmp_path / "out.pt"
    run_dir = tmp_path / "run"
    r = yoloslim_cli(
        "prune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--run-dir",
        str(run_dir),
        "--target-latency",
        "0.01ms",
        "--latency-imgsz",
        "64",
        "--latency-threads",
        "1",
    )
    assert_one_line_error(r, "not reachable", "0.01 ms", "max_layer_ratio")
    assert not out.exists()
    assert not list(run_dir.glob("*/prune.pt")) if run_dir.exists() else True


def test_latency_table_folds_activations_onto_their_convolution():
    class P:
        total_ms = 3.0

        def module_times(self):
            return {"model.1.conv": 1.0, "model.1.act": 0.5, "model.9.m_1": 0.25}

        def blocks(self):
            return []

    table = LatencyTable.from_profile(P(), {"model.1", "model.1.conv", "model.9"})
    assert table.module_ms == {"model.1.conv": 1.5, "model.9.m_1": 0.25}


def test_budget_run_reports_budget_and_search_beside_the_measured_latency(yoloslim_cli, tiny_ckpt, tiny_data, tmp_path):
    out, run_dir = tmp_path / "fast.pt", tmp_path / "run"
    r = yoloslim_cli(
        "prune",
        str(tiny_ckpt),
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--run-dir",
        str(run_dir),
        "--target-latency",
        "0.8x",
        "--latency-imgsz",
        "128",
        "--latency-threads",
        "1",
        "--finetune-epochs",
        "0",
        "--runs",
        "2",
        "--imgsz",
        "64",
    )
    assert r.returncode == 0, r.stderr
    record = json.loads((run_dir / "01_prune" / "latency.json").read_text())
    assert record["stage"] == "prune" and record["runtime"] == "onnx" and record["imgsz"] == 128
    assert record["budget"]["measured_ms"] <= record["budget"]["target_ms"]
    assert record["budget"]["steps"][0]["ratio"] == 0.0  # the unpruned model, timed first
    report = (run_dir / "report.md").read_text()
    assert "budget ms" in report and "pruned at ms" in report
