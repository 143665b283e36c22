"""Latency: models timed round-robin on one input, so machine noise hits them alike.

Each round calls every model once, starting one later than the round before; the report's figures are the median
and 90th percentile of the timed calls and the throughput of their mean (batch 1).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yoloslim.measurement.runtimes import Runtime, open_onnx_runtime


def time_interleaved(runtimes: Sequence[Runtime], x: np.ndarray, warmup: int, runs: int) -> list[list[float]]:
    """Time ``runs`` calls of every runtime, round-robin (starting one later each round); seconds per call.

    Args:
        runtimes: The opened models.
        x: The input every call gets.
        warmup: Untimed calls per runtime first.
        runs: Timed calls per runtime.

    Returns:
        One list of ``runs`` durations in seconds per runtime, in order.
    """
    for _ in range(warmup):
        for run in runtimes:
            run(x)
    times: list[list[float]] = [[] for _ in runtimes]
    order = list(range(len(runtimes)))
    for r in range(runs):
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            start = time.perf_counter()
            runtimes[i](x)
            times[i].append(time.perf_counter() - start)
    return times


def latency_figures(seconds: Sequence[float]) -> tuple[float, float, float]:
    """Summarise the timed calls of one model.

    Args:
        seconds: Durations of the timed calls, in seconds.

    Returns:
        ``(p50_ms, p90_ms, fps)``: median and 90th-percentile milliseconds, and images per second from the mean.
    """
    ms = np.asarray(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 90)), float(1000.0 / ms.mean())


def time_onnx(
    paths: Sequence[str | Path], x: np.ndarray, *, threads: int = 2, warmup: int = 1, runs: int = 20
) -> list[float]:
    """Median milliseconds per call of each ONNX file on the input ``x``, timed as the harness times them.

    For quick comparisons inside a plugin (e.g. the latency cost of a variant): the same ONNX Runtime session
    settings and the same round-robin loop as the report's latency (:func:`~yoloslim.measurement.measure`), without
    the counts and the validation.

    Args:
        paths: ONNX files.
        x: The input every call gets (e.g. :func:`~yoloslim.measurement.model_input`).
        threads: Intra-op threads of each ONNX Runtime session.
        warmup: Untimed calls per file first.
        runs: Timed calls per file.

    Returns:
        Median milliseconds per call, one per file, in order.
    """
    runtimes = [open_onnx_runtime(Path(p), threads) for p in paths]
    return [float(np.median(t)) * 1000 for t in time_interleaved(runtimes, x, warmup, runs)]
