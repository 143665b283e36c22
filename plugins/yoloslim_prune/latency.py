"""Latency-aware channel pruning: measured time, not MACs, decides what goes and how much.

- **Latency table.** The model is exported in the runtime it will be deployed in (``onnx`` FP32 or ``onnx-int8``, any
  ONNX format an export plugin writes) and profiled with ONNX Runtime's profiler at the deployment size and thread
  count (:func:`yoloslim.measurement.profile.profile_onnx`). Every kernel's time lands on the torch module it was
  exported from; a fused activation's time on its convolution.
- **Allocation.** Torch-Pruning ranks channel groups globally by importance (l1/l2/bn/taylor, unchanged). With
  ``allocation: latency`` each group's importance is divided by the time one of its channels costs: the sum, over the
  convolutions the group narrows, of the convolution's measured time over its width on that side. A channel of a
  high-resolution layer that runs slowly for its MACs goes before an equally important one of a cheap layer.
- **Budget.** ``target_latency`` (a fraction of the model's own latency) or ``target_latency_ms`` bisects the pruning
  ratio; every candidate is exported and timed in the named runtime, interleaved with the unpruned model so that load
  on the machine scales both alike, until it lands within the tolerance below the budget.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from yoloslim import RecipeError

LOGGER = logging.getLogger("yoloslim.plugin.prune")

# Importance is divided by (ms per channel) ** LATENCY_EXPONENT: 1 spends the budget where time is, 0 ignores time.
LATENCY_EXPONENT = 1.0  # measured: see the 'allocation' note in the README (importance alone ranked better)

# Options the export gets when a candidate is only timed (no parity check: the candidate is thrown away).
_TIMING_EXPORT = {"onnx": {"parity": False}, "onnx-int8": {"calib_images": 16}}


def export_for_timing(model: nn.Module, ctx: Any, runtime: str, imgsz: int, out: Path) -> Path:
    """Export a model (in memory) to ``runtime``'s format at ``imgsz`` for timing; returns the ONNX file."""
    from yoloslim import save_checkpoint

    ckpt = save_checkpoint(model, out.with_suffix(".pt"), train_args={"imgsz": imgsz})
    return ctx.export(ckpt, runtime, out, imgsz=imgsz, **_TIMING_EXPORT.get(runtime, {}))


@dataclass
class LatencyTable:
    """Measured milliseconds per module of one model in one runtime (see the module docstring).

    Attributes:
        module_ms: Kernel time per torch module name; activations are merged into their ``conv``.
        total_ms: Wall time of a pass.
        blocks: The profile's per-block rows (for the log and the report).
    """

    module_ms: dict[str, float]
    total_ms: float
    blocks: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_profile(cls, profile: Any, module_names: set[str]) -> LatencyTable:
        """Fold a :class:`~yoloslim.measurement.profile.Profile` onto the modules of the torch model."""
        ms: dict[str, float] = {}
        for name, t in profile.module_times().items():
            if name.endswith(".act") and f"{name[:-4]}.conv" in module_names:
                name = f"{name[:-4]}.conv"  # SiLU runs on the convolution's output: it narrows with it
            ms[name] = ms.get(name, 0.0) + t
        return cls(ms, profile.total_ms, profile.blocks())


def measure_table(model: nn.Module, ctx: Any, runtime: str, imgsz: int, threads: int) -> LatencyTable:
    """Export ``model`` to ``runtime`` and profile it (20 passes) into a :class:`LatencyTable`."""
    from yoloslim import model_input
    from yoloslim.measurement.profile import profile_onnx

    tmp = Path(tempfile.mkdtemp(prefix="yoloslim-latency-"))
    try:
        onnx_path = export_for_timing(model, ctx, runtime, imgsz, tmp / "model.onnx")
        profile = profile_onnx(onnx_path, model_input(imgsz), threads=threads, runs=20, warmup=5, macs=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = LatencyTable.from_profile(profile, {n for n, _ in model.named_modules()})
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    on_convs = sum(t for n, t in table.module_ms.items() if n in convs)
    LOGGER.info(
        "latency table (%s, %d px, %d threads): %.2f ms per pass, %.0f%% of it in prunable-width convolutions",
        runtime,
        imgsz,
        threads,
        table.total_ms,
        100 * on_convs / table.total_ms if table.total_ms else 0.0,
    )
    return table


class LatencyImportance:
    """A Torch-Pruning group importance divided by the measured time one channel of the group costs.

    Args:
        base: The group importance (Torch-Pruning ``Importance``: l1/l2/bn/taylor).
        model: The model the groups come from (its module names key ``module_ms``).
        module_ms: Milliseconds per module name (:class:`LatencyTable`).
    """

    def __init__(self, base: Any, model: nn.Module, module_ms: dict[str, float]) -> None:
        self.base = base
        self.ms = {id(m): module_ms[n] for n, m in model.named_modules() if n in module_ms}
        costs = [
            module_ms[n] / max(1, m.out_channels)
            for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and n in module_ms
        ]
        self.floor = (float(np.median(costs)) if costs else 1.0) * 1e-3  # a group of untimed layers is not free

    def channel_cost(self, group: Any) -> float:
        """Milliseconds one channel of ``group`` costs: per convolution it narrows, its time over that side's width."""
        import torch_pruning as tp

        cost = 0.0
        for dep, _ in group:
            module = dep.target.module
            if not isinstance(module, nn.Conv2d) or id(module) not in self.ms:
                continue
            if dep.handler in (tp.prune_conv_out_channels,):
                cost += self.ms[id(module)] / max(1, module.out_channels)
            elif dep.handler in (tp.prune_conv_in_channels,):
                cost += self.ms[id(module)] / max(1, module.in_channels)
        return max(cost, self.floor)

    def __call__(self, group: Any, **kwargs: Any) -> Any:
        imp = self.base(group, **kwargs)
        if imp is None:
            return None
        return imp / self.channel_cost(group) ** LATENCY_EXPONENT


@dataclass
class BudgetResult:
    """Outcome of :func:`search_latency`: the ratio chosen and every candidate measured."""

    ratio: float
    measured_ms: float
    target_ms: float
    reference_ms: float
    steps: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ratio": round(self.ratio, 4),
            "measured_ms": round(self.measured_ms, 3),
            "target_ms": round(self.target_ms, 3),
            "reference_ms": round(self.reference_ms, 3),
            "steps": self.steps,
        }


def search_latency(
    latency_at: Callable[[float], float],
    target_ms: float,
    max_ratio: float,
    tolerance: float = 0.05,
    iterations: int = 8,
) -> BudgetResult:
    """Bisect the pruning ratio until the measured latency is within ``tolerance`` below ``target_ms``.

    Latency falls with the ratio (up to noise); the search keeps the smallest ratio measured at or under the budget
    and stops as soon as one lands in ``[target_ms x (1 - tolerance), target_ms]``.

    Args:
        latency_at: Measured milliseconds of the model pruned at a ratio (``latency_at(0)`` is the unpruned model's).
        target_ms: The budget.
        max_ratio: Largest ratio tried (the pruner's per-layer cap).
        tolerance: Relative band below the budget that ends the search.
        iterations: Most candidates measured after the two ends.

    Returns:
        The :class:`BudgetResult` (``ratio`` 0 when the unpruned model already meets the budget).

    Raises:
        RecipeError: If even ``max_ratio`` does not meet the budget.
    """
    steps: list[dict[str, float]] = []

    def at(r: float) -> float:
        ms = latency_at(r)
        steps.append({"ratio": round(r, 4), "ms": round(ms, 3)})
        LOGGER.info("latency budget %.2f ms: ratio %.3f -> %.2f ms", target_ms, r, ms)
        return ms

    reference = at(0.0)
    if reference <= target_ms:
        return BudgetResult(0.0, reference, target_ms, reference, steps)
    floor = at(max_ratio)
    if floor > target_ms:
        raise RecipeError(
            f"latency budget {target_ms:.2f} ms is not reachable: pruning at the cap (max_layer_ratio "
            f"{max_ratio}) still measures {floor:.2f} ms (unpruned {reference:.2f} ms); raise the budget or "
            "max_layer_ratio"
        )
    lo, hi, best = 0.0, max_ratio, (max_ratio, floor)
    for _ in range(iterations):
        if best[1] >= target_ms * (1.0 - tolerance):
            break
        mid = (lo + hi) / 2
        ms = at(mid)
        if ms <= target_ms:
            hi = mid
            if mid < best[0]:
                best = (mid, ms)
        else:
            lo = mid
    return BudgetResult(best[0], best[1], target_ms, reference, steps)


class CandidateTimer:
    """Times pruned candidates of one model in one runtime, each interleaved with the unpruned model's export.

    A candidate's latency is its measured time over the reference's in the same interleaved runs, times the
    reference's latency measured once with more runs: load on the machine then scales both alike.
    """

    def __init__(self, model: nn.Module, ctx: Any, runtime: str, imgsz: int, threads: int, runs: int = 30) -> None:
        from yoloslim import model_input, time_onnx

        self.ctx, self.runtime, self.imgsz, self.threads, self.runs = ctx, runtime, imgsz, threads, runs
        self.tmp = Path(tempfile.mkdtemp(prefix="yoloslim-budget-"))
        self.x = model_input(imgsz)
        self.reference = export_for_timing(model, ctx, runtime, imgsz, self.tmp / "reference.onnx")
        self.reference_ms = time_onnx([self.reference], self.x, threads=threads, warmup=5, runs=3 * runs)[0]
        self.count = 0

    def __call__(self, model: nn.Module) -> float:
        """Milliseconds per pass of ``model`` (exported to the runtime), scaled to the reference's latency."""
        from yoloslim import time_onnx

        self.count += 1
        path = export_for_timing(model, self.ctx, self.runtime, self.imgsz, self.tmp / f"candidate{self.count}.onnx")
        ref_ms, cand_ms = time_onnx([self.reference, path], self.x, threads=self.threads, warmup=3, runs=self.runs)
        for p in self.tmp.glob(f"candidate{self.count}.*"):
            p.unlink(missing_ok=True)
        return self.reference_ms * cand_ms / ref_ms

    def close(self) -> None:
        """Remove the exported files."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_latency_stage(opts: Any, ctx: Any, where: str) -> None:
    """Before any stage runs: the runtime is exported here, and a latency budget is reachable from the run's model.

    The budget check exports and times the run's input model and the same model pruned at the cap
    (``max_layer_ratio`` in every layer: the fastest model the stage can make), so an unreachable budget stops the
    run with both numbers before any work. An already-met budget is logged (nothing will be pruned).

    Raises:
        ExportError: ``runtime`` is a format no loaded plugin exports.
        DataError: ``onnx-int8`` without a dataset to calibrate on.
        RecipeError: The budget is below what the stage can reach.
    """
    from yoloslim import DataError, ExportError, load_checkpoint

    formats = ctx.get_plugins().export_formats()
    if formats is not None and opts.runtime not in formats:
        raise ExportError(
            f"{where}: runtime '{opts.runtime}': no loaded plugin exports that format (formats here: "
            f"{', '.join(formats) or 'none'}); set runtime to one of them, or use allocation importance and no "
            "latency budget"
        )
    if opts.runtime != "onnx" and ctx.data is None:
        raise DataError(f"{where}: runtime '{opts.runtime}' calibrates on dataset images; pass --data")
    if opts.target_latency is None or ctx.model is None:
        return
    from yoloslim import make_prunable

    from .channel_pruner import prune_channels

    model, _ = load_checkpoint(ctx.model)
    model = model.float()
    make_prunable(model)
    imgsz = opts.latency_imgsz or ctx.imgsz
    timer = CandidateTimer(model, ctx, opts.runtime, imgsz, opts.latency_threads, runs=20)
    try:
        target = opts.budget_ms(timer.reference_ms)
        if target >= timer.reference_ms:
            LOGGER.info(
                "%s: the model already runs in %.2f ms, within the budget of %.2f ms", where, timer.reference_ms, target
            )
            return
        import copy

        # Every group at the cap (the allocator caps each group, so at ratio = cap the ranking does not matter).
        fastest = prune_channels(
            copy.deepcopy(model),
            ratio=opts.max_layer_ratio,
            importance="l2",
            global_pruning=True,
            round_to=opts.round_to,
            max_layer_ratio=opts.max_layer_ratio,
            prune_head=opts.prune_head,
            imgsz=ctx.imgsz,
            capped=True,
        )
        floor = timer(fastest)
    finally:
        timer.close()
    if floor > target:
        raise RecipeError(
            f"{where}: latency budget {target:.2f} ms ({opts.runtime}, {imgsz} px, {opts.latency_threads} threads) "
            f"is not reachable: the model runs in {timer.reference_ms:.2f} ms and pruned at the cap "
            f"(max_layer_ratio {opts.max_layer_ratio}) in {floor:.2f} ms; raise the budget, or max_layer_ratio"
        )
    ctx.state.setdefault("prune", {})["budget_check"] = {"reference_ms": timer.reference_ms, "floor_ms": floor}


def prune_by_latency(
    net: nn.Module,
    example: Any,
    importance: Any,
    module_ms: dict[str, float] | None,
    ratio: float,
    max_layer_ratio: float,
    round_to: int | None,
    ignored_layers: list[nn.Module],
    output_transform: Callable[[Any], Any],
) -> nn.Module:
    """Remove ``ratio`` of all prunable channels, lowest importance-per-millisecond first, each group capped.

    Torch-Pruning's global ranking would remove every channel of a group whose scores all fall under the global
    threshold, then skip that group as invalid, so the slowest layers, the ones latency weighting ranks first, would
    be the ones left whole. Here the ranking is global but each coupled group loses at most ``max_layer_ratio`` of
    its channels, and what it keeps is rounded down to a multiple of ``round_to`` (at least ``round_to``).

    Args:
        net: The prunable model (pruned in place).
        example: Example input for tracing.
        importance: Torch-Pruning group importance (l1/l2/bn/taylor).
        module_ms: Milliseconds per module name (:class:`LatencyTable`): importance is divided by a channel's cost;
            None ranks by importance alone.
        ratio: Fraction of all prunable channels to remove.
        max_layer_ratio: Most any group may lose.
        round_to: Channel multiple kept.
        ignored_layers: Layers whose channels stay.
        output_transform: Reduces the model's output to tensors for tracing.

    Returns:
        ``net``.
    """
    import math

    import torch
    import torch_pruning as tp

    scorer = LatencyImportance(importance, net, module_ms) if module_ms is not None else importance
    graph = tp.DependencyGraph().build_dependency(net, example, output_transform=output_transform)
    ignored = [m for layer in ignored_layers for m in layer.modules()]  # as Torch-Pruning's pruners expand them
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        score = scorer(group)
        if score is None:
            continue
        groups.append((group[0].dep.target.module, group[0].dep.handler, score.detach().float().cpu()))
    total = sum(len(s) for _, _, s in groups)
    want = int(ratio * total)
    if want <= 0 or not groups:
        return net
    # Candidates: each group's channels in ascending score, up to its cap; the globally lowest `want` go.
    ranked = []
    for gi, (_, _, score) in enumerate(groups):
        cap = int(math.floor(max_layer_ratio * len(score)))
        order = torch.argsort(score)[:cap]
        ranked += [(float(score[i]), gi) for i in order]
    ranked.sort()
    counts = [0] * len(groups)
    for _, gi in ranked[:want]:
        counts[gi] += 1
    for (module, handler, score), n in zip(groups, counts):
        width = len(score)
        if round_to and n > 0:
            keep = max((width - n) // round_to * round_to, min(width, round_to))
            n = width - keep
        if n <= 0:
            continue
        idxs = torch.argsort(score)[:n].tolist()
        group = graph.get_pruning_group(module, handler, idxs)
        if graph.check_pruning_group(group):
            group.prune()
    return net
