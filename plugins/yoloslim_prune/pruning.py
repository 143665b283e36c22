"""Structured pruning rounds of the ``prune`` stage: channel or depth pruning, N rounds of prune -> fine-tune."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from .calibration import accumulate_gradients, batch_loss, calibration_batches, recalibrate_batchnorm
from .channel_pruner import example_size, gflops, prune_channels
from .depth_pruner import prune_depth, removable_blocks
from .options import PruneOptions

LOGGER = logging.getLogger("yoloslim.plugin.prune")


def prune_once(
    model: nn.Module,
    opts: PruneOptions,
    ratio: float | None,
    target_macs: float | None,
    imgsz: int,
    batches: list[dict[str, Any]] | None,
    ctx: Any = None,
) -> nn.Module:
    """One pruning round with ``opts``' method and criterion, to ``ratio``, ``target_macs`` or the latency budget.

    With ``allocation: latency`` the model is first exported and profiled in ``opts.runtime`` (the latency table);
    with a latency budget the ratio is searched by timing candidates (:mod:`yoloslim_prune.latency`), and the
    outcome is kept in ``ctx.state['prune']['latency']``.
    """
    if opts.method == "channel":
        module_ms = choose = timer = None
        allocate = opts.allocation == "latency"
        if allocate or opts.target_latency is not None:
            from yoloslim import make_prunable

            from .latency import CandidateTimer, measure_table, search_latency

            make_prunable(model)  # the table's module names are those of the model Torch-Pruning sees
            lat_imgsz = opts.latency_imgsz or imgsz
            record: dict[str, Any] = {"runtime": opts.runtime, "imgsz": lat_imgsz, "threads": opts.latency_threads}
            if allocate:
                table = measure_table(model, ctx, opts.runtime, lat_imgsz, opts.latency_threads)
                module_ms = table.module_ms
                record["profile_before"] = table.blocks
            if opts.target_latency is not None:
                timer = CandidateTimer(model, ctx, opts.runtime, lat_imgsz, opts.latency_threads)
                target = opts.budget_ms(timer.reference_ms)

                def choose(pruned: Any) -> float:
                    result = search_latency(
                        lambda r: timer(pruned(r)) if r > 0 else timer.reference_ms,
                        target,
                        opts.max_layer_ratio,
                        opts.latency_tolerance,
                    )
                    record["budget"] = {"target_latency": list(opts.target_latency), **result.to_dict()}
                    return result.ratio

                ratio = target_macs = None
            if ctx is not None:
                ctx.state.setdefault("prune", {})["latency"] = record
        try:
            return prune_channels(
                model,
                ratio=ratio,
                target_macs=target_macs,
                importance=opts.importance,
                global_pruning=opts.global_pruning,
                round_to=opts.round_to,
                max_layer_ratio=opts.max_layer_ratio,
                prune_head=opts.prune_head,
                imgsz=imgsz,
                gradients=(lambda m: accumulate_gradients(m, batches)) if batches else None,
                module_ms=module_ms,
                capped=opts.allocation in ("importance", "latency"),
                choose_ratio=choose,
            )
        finally:
            if timer is not None:
                timer.close()
    prune_depth(
        model,
        ratio=ratio,
        target_macs=target_macs,
        importance=opts.importance,
        imgsz=imgsz,
        loss=(lambda m: batch_loss(m, batches)) if batches else None,
    )
    return model


def round_goals(opts: PruneOptions) -> list[tuple[str, float]]:
    """What each of the N rounds aims at, relative to the original model: ('ratio', r_k) or ('macs', f_k)."""
    n = opts.iterative_steps
    if opts.target_latency is not None:
        return [("latency", 0.0)]  # one round: the budget is searched by timing candidates
    if opts.target_macs is not None:
        return [("macs", 1.0 - (1.0 - opts.target_macs) * k / n) for k in range(1, n + 1)]
    return [("ratio", opts.ratio * k / n) for k in range(1, n + 1)]


def prune_model(model: nn.Module, opts: PruneOptions, ctx: Any, stage: Any) -> nn.Module:
    """Run the stage's structured pruning; rounds before the last are each fine-tuned for ``stage.epochs``.

    The last round's pruned model is returned; the core fine-tunes it (``stage.epochs``) as for any stage.
    """
    from yoloslim import load_checkpoint, save_checkpoint

    imgsz = ctx.imgsz
    batches = None
    if opts.needs_data or opts.recalibrate:
        batches = calibration_batches(ctx.data, imgsz, opts.calib_batches)
    size = example_size(imgsz)
    base = gflops(model, size)
    blocks0 = len(removable_blocks(model)) if opts.method == "depth" else 0
    goals = round_goals(opts)
    for k, (kind, goal) in enumerate(goals, start=1):
        if kind == "latency":
            rel_ratio = rel_macs = None
        elif kind == "macs":
            rel_ratio, rel_macs = None, min(1.0, base * goal / gflops(model, size))
        elif opts.method == "depth":
            removed = blocks0 - len(removable_blocks(model))
            left = len(removable_blocks(model))
            rel_ratio, rel_macs = (max(0, round(goal * blocks0) - removed) / left if left else 0.0), None
        else:
            prev = opts.ratio * (k - 1) / len(goals)
            rel_ratio, rel_macs = 1.0 - (1.0 - goal) / (1.0 - prev), None
        ctx.logger.info(
            "prune round %d/%d (%s, %s): %s",
            k,
            len(goals),
            opts.method,
            opts.importance,
            f"latency budget {opts.target_latency}" if kind == "latency" else f"{kind} {goal:.3f}",
        )
        model = prune_once(model, opts, rel_ratio, rel_macs, imgsz, batches, ctx)
        if opts.recalibrate and batches:
            recalibrate_batchnorm(model, batches)
            ctx.logger.info(
                "BatchNorm statistics re-estimated on %d calibration images", sum(len(b["img"]) for b in batches)
            )
        latency = (ctx.state.get("prune") or {}).get("latency")
        if latency is not None:
            latency["stage"] = stage.name
            from yoloslim import atomic_write_json

            atomic_write_json(Path(ctx.stage_dir) / "latency.json", latency)
        if k == len(goals) or stage.epochs == 0:
            continue
        step_dir = Path(ctx.stage_dir) / f"round{k}"
        own_args = model.args if isinstance(getattr(model, "args", None), dict) else {}
        ckpt = save_checkpoint(
            model,
            step_dir / "pruned.pt",
            train_args={**own_args, "data": str(ctx.data), "imgsz": imgsz},
            yoloslim={"stage": stage.to_dict(), "round": k},
        )
        model, _ = load_checkpoint(ctx.finetune(model, ckpt, train_args=own_args, name=step_dir.name))
    ctx.logger.info(
        "pruned: GFLOPs %.3f -> %.3f (%.1f%% of the original) at %d px",
        base,
        gflops(model, size),
        100 * gflops(model, size) / base,
        size,
    )
    return model
