"""The run report: ``report.md`` and ``report.json`` comparing the original with every artifact."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Sequence

from yoloslim.checkpoint import atomic_write_json, atomic_write_text
from yoloslim.measure import Measurement, format_table


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


def render_markdown(measurements: Sequence[Measurement], meta: dict[str, Any]) -> str:
    """Render the report: settings, the measurement table, deltas against the first row, extra columns."""
    base = measurements[0]
    lines = [f"# yoloslim report: {meta.get('recipe', '')}", ""]
    lines += [f"- model: `{meta.get('model')}`", f"- data: `{meta.get('data')}` (mAP on split `{meta.get('split')}`)",
              f"- image size: {meta.get('imgsz')}; latency: batch 1, {base.threads} CPU threads, "
              f"{base.runs} timed runs after warm-up, interleaved across rows", ""]
    lines += ["## Measurements", "", format_table(measurements), ""]
    lines += ["## Against the original", "",
              "| name | params | GFLOPs | size | latency p50 | mAP50-95 (points) |",
              "|---|---|---|---|---|---|"]
    for m in measurements:
        lines.append(f"| {m.name} | {_ratio(m.params, base.params)} | {_ratio(m.gflops, base.gflops)} | "
                     f"{_ratio(m.size_mb, base.size_mb)} | {_ratio(m.latency_p50_ms, base.latency_p50_ms)} | "
                     f"{_delta(m.map50_95, base.map50_95)} |")
    extra_keys = sorted({k for m in measurements for k in m.extra})
    if extra_keys:
        lines += ["", "## Plugin columns", "", "| name | " + " | ".join(extra_keys) + " |",
                  "|---|" + "---|" * len(extra_keys)]
        for m in measurements:
            lines.append(f"| {m.name} | " + " | ".join(str(m.extra.get(k, "-")) for k in extra_keys) + " |")
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, measurements: Sequence[Measurement],
                 meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into ``run_dir`` atomically and return their paths."""
    run_dir = Path(run_dir)
    md = atomic_write_text(run_dir / "report.md", render_markdown(measurements, meta))
    js = atomic_write_json(run_dir / "report.json", {
        **meta, "environment": environment(), "measurements": [m.to_dict() for m in measurements]})
    return md, js
