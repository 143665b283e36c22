"""The run report: ``report.md``, ``report.json`` and ``pareto.png`` comparing the original with every artifact.

``yoloslim bench`` writes the same table and plot (``bench.md``, ``bench.json``, ``pareto.png``) for any files.
"""

from __future__ import annotations

import io
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yoloslim.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from yoloslim.measurement import Measurement, format_table, text_cell

PLOT_NAME = "pareto.png"


def environment() -> dict[str, Any]:
    """Versions and machine facts that a reader needs to trust the numbers."""
    import onnxruntime
    import torch
    import ultralytics

    from yoloslim import __version__

    return {
        "yoloslim": __version__,
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _delta(a: float | None, b: float | None) -> str:
    return f"{(a - b) * 100:+.1f}" if a is not None and b is not None else "-"


def quality(m: Measurement) -> float | None:
    """A row's quality: mAP50-95 when measured against labels, else its agreement mAP50-95 with the original."""
    if m.map50_95 is not None:
        return m.map50_95
    return (m.agreement or {}).get("map50_95")


def quality_label(measurements: Sequence[Measurement]) -> str:
    """What :func:`quality` is for these rows: ``mAP50-95`` or ``agreement mAP50-95``."""
    return "mAP50-95" if any(m.map50_95 is not None for m in measurements) else "agreement mAP50-95"


def pareto_front(measurements: Sequence[Measurement]) -> list[int]:
    """Indices of the rows no other row beats on both latency (p50, lower) and quality (higher), fastest first.

    Quality is mAP50-95, or agreement mAP50-95 on unlabelled images (:func:`quality`). Rows without a latency or a
    quality are left out.
    """
    rows = [
        (m.latency_p50_ms, quality(m), i)
        for i, m in enumerate(measurements)
        if m.latency_p50_ms is not None and quality(m) is not None
    ]
    front: list[int] = []
    best = float("-inf")
    for _, acc, i in sorted(rows, key=lambda r: (r[0], -r[1])):
        if acc > best:
            front.append(i)
            best = acc
    return front


def plot_pareto(measurements: Sequence[Measurement], path: str | Path, title: str = "") -> Path | None:
    """Plot mAP50-95 against latency p50 for every row, the Pareto front marked; write a PNG atomically.

    Returns:
        The written path, or None when no row has both a latency and an mAP.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    front = pareto_front(measurements)
    if not front:
        return None
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = [(i, m) for i, m in enumerate(measurements) if m.latency_p50_ms is not None and quality(m) is not None]
    others = [m for i, m in points if i not in front]
    if others:
        ax.scatter(
            [m.latency_p50_ms for m in others], [quality(m) for m in others], color="0.55", label="dominated", zorder=2
        )
    fx = [measurements[i].latency_p50_ms for i in front]
    fy = [quality(measurements[i]) for i in front]
    ax.step(fx, fy, where="post", color="tab:red", linewidth=1.2, zorder=1)
    ax.scatter(fx, fy, color="tab:red", label="Pareto front", zorder=3)
    for _, m in points:
        ax.annotate(
            f"{m.name} ({m.format})",
            (m.latency_p50_ms, quality(m)),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    base = measurements[0]
    ax.set_xlabel(f"latency p50 (ms, batch 1, {base.threads} threads, {base.device})")
    ax.set_ylabel(f"{quality_label(measurements)} ({base.split or (base.agreement or {}).get('split') or 'val'})")
    ax.set_title(title or "accuracy vs latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def _pareto_section(measurements: Sequence[Measurement], plot: str | None) -> list[str]:
    front = pareto_front(measurements)
    if not front:
        return []
    lines = ["## Accuracy vs latency", ""]
    if plot:
        lines += [f"![mAP50-95 vs latency]({plot})", ""]
    lines += [
        "Pareto front (no other row is both faster and more accurate), fastest first: "
        + ", ".join(f"`{measurements[i].name}`" for i in front),
        "",
    ]
    return lines


def like_for_like(measurements: Sequence[Measurement], m: Measurement) -> Measurement:
    """The row ``m`` is compared with: the first row of its format (the original, or the original exported to that
    format by the pipeline), else the first row."""
    return next((r for r in measurements if r.format == m.format), measurements[0])


def render_markdown(measurements: Sequence[Measurement], meta: dict[str, Any], plot: str | None = None) -> str:
    """Render the report: settings, the measurement table, deltas against the first row, the Pareto front and plot
    (``plot``: the image's path relative to the report), extra columns."""
    base = measurements[0]
    lines = [f"# yoloslim report: {meta.get('recipe', '')}", ""]
    lines += [
        f"- model: `{meta.get('model')}`",
        f"- data: `{meta.get('data')}` ({meta.get('quality') or 'mAP'} on split `{meta.get('split')}`)",
        f"- image size: {meta.get('imgsz')}; latency: batch 1, {base.threads} CPU threads, "
        f"{base.runs} timed runs after warm-up, interleaved across rows",
        "",
    ]
    lines += ["## Measurements", "", format_table(measurements), ""]
    lines += [
        "## Against the original, like for like",
        "",
        "Each row is compared with the original in its own format (FP32): a `.pt` with the `.pt`, an ONNX "
        "file with the original exported to FP32 ONNX and timed in the same runtime, so a ratio measures the "
        "compression, not a change of format.",
        "",
        f"| name | against | params | GFLOPs | size | latency p50 | speed-up | {quality_label(measurements)} "
        "(points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        ref = like_for_like(measurements, m)
        speed = _ratio(ref.latency_p50_ms, m.latency_p50_ms)
        lines.append(
            f"| {m.name} | {ref.name} | {_ratio(m.params, ref.params)} | {_ratio(m.gflops, ref.gflops)} | "
            f"{_ratio(m.size_mb, ref.size_mb)} | {_ratio(m.latency_p50_ms, ref.latency_p50_ms)} | {speed} | "
            f"{_delta(quality(m), quality(ref))} |"
        )
    if meta.get("missed"):
        lines += ["", "## Targets missed", ""] + [f"- {line}" for line in meta["missed"]]
    lines += [""] + _pareto_section(measurements, plot)
    extra_keys = sorted({k for m in measurements for k in m.extra})
    if extra_keys:
        lines += [
            "",
            "## Plugin columns",
            "",
            "| name | " + " | ".join(extra_keys) + " |",
            "|---|" + "---|" * len(extra_keys),
        ]
        for m in measurements:
            lines.append(f"| {m.name} | " + " | ".join(text_cell(m.extra.get(k)) for k in extra_keys) + " |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, measurements: Sequence[Measurement], meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.json`` and ``pareto.png`` into ``run_dir`` atomically; return the first two."""
    run_dir = Path(run_dir)
    plot = plot_pareto(measurements, run_dir / PLOT_NAME, f"yoloslim report: {meta.get('recipe', '')}")
    md = atomic_write_text(run_dir / "report.md", render_markdown(measurements, meta, plot.name if plot else None))
    js = atomic_write_json(
        run_dir / "report.json",
        {**meta, "environment": environment(), "measurements": [m.to_dict() for m in measurements]},
    )
    return md, js


def write_bench(
    out_dir: str | Path, measurements: Sequence[Measurement], meta: dict[str, Any]
) -> tuple[Path, Path, Path | None]:
    """Write ``bench.md``, ``bench.json`` and ``pareto.png`` (when rows have mAP and latency) into ``out_dir``.

    Returns:
        ``(bench.md, bench.json, pareto.png or None)``.
    """
    out_dir = Path(out_dir)
    plot = plot_pareto(measurements, out_dir / PLOT_NAME, "yoloslim bench")
    base = measurements[0]
    split = base.split or (base.agreement or {}).get("split")
    what = quality_label(measurements)
    if base.agreement and what != "mAP50-95":
        what += f" with `{Path(base.agreement['reference']).name}`"
    lines = [
        "# yoloslim bench",
        "",
        f"- data: `{meta.get('data')}` ({what} on split `{split}`)",
        f"- image size: {base.imgsz}; latency: batch 1, {base.threads} CPU threads, {base.runs} timed runs "
        "after warm-up, interleaved across rows in one process",
        "",
        format_table(measurements),
        "",
    ] + _pareto_section(measurements, plot.name if plot else None)
    md = atomic_write_text(out_dir / "bench.md", "\n".join(lines) + "\n")
    front = [measurements[i].name for i in pareto_front(measurements)]
    js = atomic_write_json(
        out_dir / "bench.json",
        {
            **meta,
            "environment": environment(),
            "pareto_front": front,
            "measurements": [m.to_dict() for m in measurements],
        },
    )
    return md, js, plot
