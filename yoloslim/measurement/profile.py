"""Where the time goes: a per-node and per-block latency profile of an ONNX model in ONNX Runtime (CPU).

ONNX Runtime's own profiler times every kernel of every pass. The session is the harness's (all graph optimizations,
no thread spinning), so what is timed is what runs in a latency measurement: fused ``QuickGelu`` activations,
``QLinearConv`` for an INT8 file, and the NCHWc layout's ``Reorder`` nodes the optimizer inserts.

Ultralytics' exporter names every node after the module it came from (``/model.3/conv/Conv``), so a kernel's time is
put on its block (``model.3``) and on its torch module (``model.3.conv``); the detection head is split into its
convolutions and its decode (DFL softmax, anchors, concatenations), which costs time and no parameters. Nodes with no
module (layout reorders the optimizer added, the input's quantization) form their own rows.

The per-block times add up to the kernel time of a pass, and the kernel time to the pass's wall time (ORT's
``model_run``) up to the executor's overhead between kernels: :attr:`Profile.coverage` reports that share.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_BLOCK = re.compile(r"^/?model\.(\d+)(?:/|$)")
_HEAD_BRANCHES = ("cv2", "cv3", "cv4", "one2one_cv2", "one2one_cv3", "one2one_cv4")
_LAYOUT_OPS = {"ReorderInput", "ReorderOutput"}


@dataclass
class NodeTime:
    """One kernel of the optimized graph: its name, op type and milliseconds per pass."""

    name: str
    op: str
    ms: float


@dataclass
class Profile:
    """A model's latency profile: per-node kernel times (mean per pass) and the pass's wall time.

    Attributes:
        path: The ONNX file.
        imgsz: Input size profiled.
        threads: Intra-op threads.
        runs: Passes averaged.
        total_ms: Mean wall time of a pass (ORT's ``model_run`` event).
        nodes: Kernel times, in execution order.
        macs: Multiply-accumulates per node of the *file's* graph, by node name (for per-block MACs).
        head: Index of the detection head's layer (``model.N``), or None if no node names one.
    """

    path: str
    imgsz: int
    threads: int
    runs: int
    total_ms: float
    nodes: list[NodeTime]
    macs: dict[str, int] = field(default_factory=dict)
    head: int | None = None

    @property
    def kernel_ms(self) -> float:
        """Sum of the kernel times of a pass."""
        return sum(n.ms for n in self.nodes)

    @property
    def coverage(self) -> float:
        """Share of the pass's wall time spent inside kernels (the rest is the executor's own work)."""
        return self.kernel_ms / self.total_ms if self.total_ms else 0.0

    def blocks(self) -> list[dict[str, Any]]:
        """Time and MACs per block, in model order: ``{"block", "ms", "share", "macs", "nodes"}``.

        Blocks are ``model.N``; the head is split into ``model.N`` (its convolution branches) and ``model.N decode``;
        kernels that belong to no module are grouped by kind (``layout reorders``, ``other``). ``share`` is of the
        kernel time, so the rows add up to 1.
        """
        rows: dict[str, dict[str, Any]] = {}

        def row(key: str) -> dict[str, Any]:
            return rows.setdefault(key, {"block": key, "ms": 0.0, "macs": 0, "nodes": 0})

        for n in self.nodes:
            r = row(self.block_of(n.name, n.op))
            r["ms"] += n.ms
            r["nodes"] += 1
        for name, macs in self.macs.items():
            row(self.block_of(name, ""))["macs"] += macs
        kernel = self.kernel_ms
        for r in rows.values():
            r["ms"] = round(r["ms"], 4)
            r["share"] = round(r["ms"] / kernel, 4) if kernel else 0.0
        return sorted(rows.values(), key=_block_order)

    def block_of(self, node: str, op: str) -> str:
        """The row a node's time goes to (see :meth:`blocks`)."""
        m = _BLOCK.match(node)
        if m is None:
            return "layout reorders" if op in _LAYOUT_OPS or node.startswith("Reorder") else "other"
        index = int(m.group(1))
        block = f"model.{index}"
        if index == self.head:
            parts = node.strip("/").split("/")
            if len(parts) < 2 or parts[1].split(".")[0] not in _HEAD_BRANCHES:
                return f"{block} decode"
        return block

    def module_times(self) -> dict[str, float]:
        """Milliseconds per torch module name: each kernel's time on the module its node was exported from.

        ``/model.3/conv/Conv`` goes to ``model.3.conv``; an activation fused by ONNX Runtime
        (``/model.2/cv2/act/Mul/QuickGeluFusion/``) goes to the module that holds it (``model.2.cv2``'s ``act``,
        reported as ``model.2.cv2.act``). Kernels that name no module are left out.
        """
        times: dict[str, float] = {}
        for n in self.nodes:
            if _BLOCK.match(n.name) is None:
                continue
            module = module_of(n.name)
            times[module] = times.get(module, 0.0) + n.ms
        return times

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: totals and the per-block rows."""
        return {
            "path": self.path,
            "imgsz": self.imgsz,
            "threads": self.threads,
            "runs": self.runs,
            "total_ms": round(self.total_ms, 3),
            "kernel_ms": round(self.kernel_ms, 3),
            "coverage": round(self.coverage, 4),
            "gmacs": round(sum(self.macs.values()) / 1e9, 4),
            "blocks": self.blocks(),
        }


def module_of(node: str) -> str:
    """The torch module an exported node comes from: ``/model.23/cv2.0/cv2.0.0/conv/Conv`` -> ``model.23.cv2.0.0.conv``.

    The exporter scopes nested containers by their full path (``cv2.0`` then ``cv2.0.0``), so a scope that extends
    the one before replaces it; the last part is the op. An activation ONNX Runtime fused
    (``/model.2/cv2/act/Mul/QuickGeluFusion/``) belongs to the module that holds the fused ops (``model.2.cv2.act``).
    """
    parts = [p for p in node.split("/") if p]
    if len(parts) > 2 and parts[-1].endswith("Fusion"):
        parts = parts[:-1]
    scopes: list[str] = []
    for part in parts[:-1] if len(parts) > 1 else parts:
        if scopes and part.startswith(scopes[-1] + "."):
            scopes[-1] = part
        else:
            scopes.append(part)
    return ".".join(scopes)


def _block_order(row: dict[str, Any]) -> tuple[int, int, str]:
    m = re.match(r"model\.(\d+)( decode)?$", row["block"])
    if m:
        return 0, int(m.group(1)) * 2 + (1 if m.group(2) else 0), ""
    return 1, 0, row["block"]


def _head_index(names: Sequence[str]) -> int | None:
    """The last layer index named by any node: the detection head (Ultralytics' Detect is the last layer)."""
    indices = [int(m.group(1)) for m in map(_BLOCK.match, names) if m]
    return max(indices) if indices else None


def profile_onnx(
    path: str | Path,
    x: np.ndarray,
    *,
    threads: int = 2,
    runs: int = 20,
    warmup: int = 5,
    macs: bool = True,
) -> Profile:
    """Profile ``runs`` passes of an ONNX file on ``x`` with ONNX Runtime's profiler, after ``warmup`` passes.

    Args:
        path: ONNX file (any precision ONNX Runtime's CPU provider runs).
        x: The input batch, float32 NCHW (e.g. :func:`~yoloslim.measurement.model_input`).
        threads: Intra-op threads.
        runs: Passes averaged.
        warmup: Passes run first and left out.
        macs: Also count MACs per node of the file (shape inference; a second or two).

    Returns:
        The :class:`Profile`.

    Raises:
        ModelError: If ONNX Runtime cannot open the file.
    """
    from yoloslim.measurement.runtimes import onnx_session

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="yoloslim-profile-") as tmp:
        session, name, dtype = onnx_session(path, threads, profile_prefix=os.path.join(tmp, "ort"))
        feed = {name: x.astype(dtype, copy=False)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    totals: dict[tuple[str, str], float] = {}
    order: list[tuple[str, str]] = []
    passes = 0  # ORT writes a pass's 'model_run' event after the kernels of that pass
    wall = 0.0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            passes += 1
            if passes > warmup:
                wall += e["dur"] / 1000.0
            continue
        if passes < warmup or e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        key = (e["name"][: -len("_kernel_time")], e.get("args", {}).get("op_name", "?"))
        if key not in totals:
            order.append(key)
            totals[key] = 0.0
        totals[key] += e["dur"] / 1000.0
    nodes = [NodeTime(name, op, totals[(name, op)] / runs) for name, op in order]
    per_node_macs: dict[str, int] = {}
    if macs:
        from yoloslim.measurement.counting import onnx_node_macs

        per_node_macs = onnx_node_macs(path, x.shape[-1])
    head = _head_index([n.name for n in nodes] + list(per_node_macs))
    return Profile(str(path), int(x.shape[-1]), threads, runs, wall / runs, nodes, per_node_macs, head)


def format_profiles(profiles: Sequence[tuple[str, Profile]]) -> str:
    """Markdown: one table of time and MACs per block, a column pair per model (the first is the reference).

    Each model gets ``ms`` and ``share`` (of its kernel time); a second model onwards also gets ``x ref`` (its
    block time over the first model's). MACs are the first model's and each later one's in millions.
    """
    if not profiles:
        return ""
    names = [name for name, _ in profiles]
    per_model = [{r["block"]: r for r in p.blocks()} for _, p in profiles]
    blocks = sorted({b for rows in per_model for b in rows}, key=lambda b: _block_order({"block": b}))
    head = ["block"]
    for i, name in enumerate(names):
        head += [f"{name} ms", f"{name} share", f"{name} MMACs"] + ([f"{name} x ref"] if i else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = per_model[0]
    for b in blocks:
        cells = [b]
        for i, rows in enumerate(per_model):
            r = rows.get(b)
            cells += [f"{r['ms']:.3f}", f"{r['share']:.1%}", f"{r['macs'] / 1e6:.1f}"] if r else ["-", "-", "-"]
            if i:
                base = ref.get(b)
                cells.append(f"{r['ms'] / base['ms']:.2f}" if r and base and base["ms"] > 0 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**total (kernels)**"]
    for i, (_, p) in enumerate(profiles):
        total += [f"{p.kernel_ms:.3f}", "100%", f"{sum(p.macs.values()) / 1e6:.1f}"]
        if i:
            total.append(f"{p.kernel_ms / profiles[0][1].kernel_ms:.2f}")
    lines.append("| " + " | ".join(total) + " |")
    wall = ["pass (wall)"]
    for i, (_, p) in enumerate(profiles):
        wall += [f"{p.total_ms:.3f}", f"kernels {p.coverage:.0%}", ""]
        if i:
            wall.append(f"{p.total_ms / profiles[0][1].total_ms:.2f}")
    lines.append("| " + " | ".join(wall) + " |")
    return "\n".join(lines) + "\n"
