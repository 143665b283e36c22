"""Where an ONNX graph spends its time in ONNX Runtime: per-op-type kernel time from ORT's own profiler.

Benchmark tooling (used by ``bench/quant.py`` and ``bench/real.py``), not part of the quantization plugin.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def profile_ops(
    path: str | Path, image: np.ndarray, runs: int = 20, threads: int = 2, warmup: int = 3, top: int = 10
) -> dict[str, Any]:
    """Profile ``runs`` forward passes of ``path`` on ``image`` with ONNX Runtime's profiler.

    The session is optimized exactly as the measurement harness's (``ORT_ENABLE_ALL``), so the op types are the
    ones that really run (``QLinearConv``, ``QuickGelu``, ...), not the file's.

    Args:
        path: ONNX file.
        image: Input batch (1, 3, H, W) float32.
        runs: Forward passes summarized (the ``warmup`` passes before them are profiled too, then dropped).
        threads: Intra-op threads.
        warmup: Passes excluded from the summary.
        top: How many op types to list.

    Returns:
        ``{"ms_per_run": kernel time per pass, "ops": [[op type, ms per pass, share], ...] (top first),
        "nodes": node count per op type after optimization}``.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="yoloslim-prof-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
        feed = {name: image.astype(dtype)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    nodes: dict[str, set[str]] = {}
    finished = 0  # ORT records a pass's 'model_run' event after the kernels of that pass
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            finished += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        nodes.setdefault(op, set()).add(e["name"])
        if finished >= warmup:
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0
    total = sum(per_op.values()) / runs
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {
        "ms_per_run": round(total, 3),
        "ops": [[op, round(ms / runs, 3), round(ms / runs / total, 3) if total else 0.0] for op, ms in ranked[:top]],
        "nodes": {op: len(v) for op, v in sorted(nodes.items(), key=lambda kv: -len(kv[1]))},
    }


def format_profiles(profiles: dict[str, dict[str, Any]], top: int = 6) -> str:
    """A markdown table: one row per graph, its kernel time and its top op types (ms per pass)."""
    lines = ["| graph | kernel ms/run | top op types (ms per run, share) |", "|---|---|---|"]
    for name, p in profiles.items():
        ops = ", ".join(f"{op} {ms:.2f} ({share:.0%})" for op, ms, share in p["ops"][:top])
        lines.append(f"| {name} | {p['ms_per_run']:.2f} | {ops} |")
    return "\n".join(lines) + "\n"
