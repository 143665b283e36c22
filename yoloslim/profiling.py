"""``yoloslim profile``: where a model's time goes in the deployment runtime, per block, beside its MACs.

A checkpoint is exported first through the export plugins (``onnx`` for FP32, ``onnx-int8`` for the quantize stage's
INT8 PTQ, any other ONNX format a plugin writes); an ``.onnx`` file is profiled as it is. Every model is profiled with
the same input, threads and runs (:func:`yoloslim.measurement.profile.profile_onnx`), one after another.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yoloslim.checkpoint import load_checkpoint
from yoloslim.errors import DataError, ModelError
from yoloslim.measurement import check_imgsz, check_runs, check_threads, model_input, model_stride
from yoloslim.measurement.profile import Profile, format_profiles, profile_onnx


def profile_models(
    models: Sequence[str | Path],
    *,
    imgsz: int = 640,
    fmt: str = "onnx",
    data: str | None = None,
    threads: int = 2,
    runs: int = 20,
    image: str | Path | None = None,
) -> list[tuple[str, Profile]]:
    """Profile every model in ONNX Runtime (CPU) at ``imgsz``: ``[(name, Profile), ...]`` in the order given.

    Args:
        models: Checkpoints (exported to ``fmt`` first) or ``.onnx`` files.
        imgsz: Square input size.
        fmt: Export format of checkpoints: ``onnx`` (FP32), ``onnx-int8`` (needs ``data`` to calibrate), ...
        data: Dataset YAML, for formats that calibrate.
        threads: Intra-op threads.
        runs: Profiled passes per model.
        image: Input image (default: the harness's fixed synthetic image).

    Raises:
        ModelError: A model file that is missing or that no runtime here runs.
        DataError: A calibrating format without ``data``.
    """
    from yoloslim.context import SlimContext

    threads, runs = check_threads(threads), check_runs(runs)
    for m in models:
        path = Path(m)
        if not path.is_file():
            raise ModelError(f"{m}: no such file; pass a checkpoint (.pt) or an ONNX file")
        if path.suffix not in (".pt", ".onnx"):
            raise ModelError(f"{m}: profile runs .pt checkpoints (exported first) and .onnx files; export it first")
    if fmt != "onnx" and data is None and any(Path(m).suffix == ".pt" for m in models):
        raise DataError(f"format '{fmt}' calibrates on dataset images; pass --data")
    x = model_input(imgsz, image)
    names = _names(models)
    out: list[tuple[str, Profile]] = []
    with tempfile.TemporaryDirectory(prefix="yoloslim-profile-") as tmp:
        for name, m in zip(names, models):
            path = Path(m)
            if path.suffix == ".pt":
                model, _ = load_checkpoint(path)
                check_imgsz(imgsz, model_stride(model))
                ctx = SlimContext(imgsz=imgsz, data=data)
                path = ctx.export(path, fmt, Path(tmp) / f"{len(out)}_{path.stem}.onnx", imgsz=imgsz)
            out.append((name, profile_onnx(path, x, threads=threads, runs=runs)))
    return out


def _names(models: Sequence[str | Path]) -> list[str]:
    """Short unique names: file stems, with their parent folder where two stems collide."""
    stems = [Path(m).stem for m in models]
    return [f"{Path(m).parent.name}/{s}" if stems.count(s) > 1 else s for m, s in zip(models, stems)]


def profile_report(profiles: Sequence[tuple[str, Profile]], fmt: str) -> tuple[str, dict[str, Any]]:
    """The markdown report and its JSON of :func:`profile_models`' result."""
    first = profiles[0][1]
    head = (
        f"# Latency profile: ONNX Runtime CPU, {fmt if fmt else 'onnx'}, {first.imgsz} px, {first.threads} threads, "
        f"batch 1, mean of {first.runs} passes\n\n"
        "Time per block from ONNX Runtime's profiler (kernel time; the last row is the whole pass, and the share of "
        "it spent in kernels). MMACs are the block's multiply-accumulates: time is not proportional to them.\n\n"
    )
    md = head + format_profiles(profiles)
    for name, p in profiles:
        rows = sorted(p.blocks(), key=lambda r: -r["ms"])[:5]
        top = ", ".join(f"{r['block']} {r['share']:.0%}" for r in rows)
        mac_share = {r["block"]: r["macs"] / max(1, sum(p.macs.values())) for r in p.blocks()}
        cheap = [r for r in p.blocks() if r["share"] >= 0.03 and mac_share.get(r["block"], 0) < r["share"] / 3]
        md += f"\n- {name}: {p.total_ms:.2f} ms per pass; most time in {top}."
        if cheap:
            md += " Time far above its MACs share: " + ", ".join(
                f"{r['block']} ({r['share']:.0%} of time, {mac_share[r['block']]:.0%} of MACs)" for r in cheap
            )
            md += "."
    md += "\n"
    return md, {"format": fmt, "models": {name: p.to_dict() for name, p in profiles}}
