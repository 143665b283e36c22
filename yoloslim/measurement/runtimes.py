"""Runtimes: a model file opened for running, as one callable (float32 NCHW batch in, raw network output out).

The built-in runtimes are torch (a loaded ``.pt``) and an ONNX Runtime CPU session (``.onnx``, no thread spinning,
so sessions timed round-robin do not slow each other); a plugin's ``yoloslim_open_runtime`` hook is asked first
through a :data:`RuntimeOpener`. Latency, agreement and every quick timing run models through these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yoloslim.errors import ModelError

Runtime = Callable[[np.ndarray], Any]
"""A loaded model: takes a float32 NCHW batch (RGB, 0..1) and returns the raw network output."""

RuntimeOpener = Callable[[Path, int], "Runtime | None"]
"""``opener(path, threads)`` returns a :data:`Runtime` for formats it knows, ``None`` for the others."""

BUILTIN_FORMATS = ("pt", "onnx")
"""Formats the built-in runtimes run; any other needs a :data:`RuntimeOpener`."""


def open_torch_runtime(model: torch.nn.Module) -> Runtime:
    """Wrap a (fused, float32, eval) torch model as a runtime."""

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def onnx_session(path: Path, threads: int, profile_prefix: str | None = None) -> tuple[Any, str, Any]:
    """An ONNX Runtime CPU session as the harness times one: ``(session, input name, input dtype)``.

    Args:
        path: ONNX file.
        threads: Intra-op threads.
        profile_prefix: Turn ONNX Runtime's profiler on, writing its trace under this prefix.

    Raises:
        ModelError: If ONNX Runtime cannot open the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle intra-op threads spin by default; with several sessions timed round-robin, one session's spinning
    # threads steal the cores of the next (measured: yolov8n 320 px, 2 threads: 12.3 ms alone, 27.4 ms between
    # runs of a yolov8s session; 14.0 / 14.2 ms without spinning). Every row is timed without spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"{path}: ONNX Runtime cannot open it ({type(e).__name__}: {e}); export it again") from e
    graph_input = session.get_inputs()[0]
    dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
    return session, graph_input.name, dtype


def open_onnx_runtime(path: Path, threads: int) -> Runtime:
    """Open an ONNX file in an ONNX Runtime CPU session with ``threads`` intra-op threads."""
    session, name, dtype = onnx_session(path, threads)

    def run(x: np.ndarray) -> Any:
        return session.run(None, {name: x.astype(dtype, copy=False)})

    return run


def open_runtime(
    path: Path, fmt: str, threads: int, torch_model: torch.nn.Module | None, opener: RuntimeOpener | None
) -> Runtime:
    """Open one model for running: the plugin opener first, then the built-in torch / ONNX Runtime runtimes.

    Args:
        path: The model file.
        fmt: Its format (:func:`yoloslim.checkpoint.model_format`).
        threads: CPU threads the runtime gets.
        torch_model: The loaded (fused, eval) model of a ``.pt``, or None.
        opener: ``opener(path, threads) -> runtime | None``, tried first; None from it falls back to the built-ins.

    Returns:
        The runtime.

    Raises:
        ModelError: If nothing can run the format (or the ONNX file cannot be opened).
    """
    runtime = opener(path, threads) if opener is not None else None
    if runtime is not None:
        return runtime
    if fmt == "pt" and torch_model is not None:
        return open_torch_runtime(torch_model)
    if fmt == "onnx":
        return open_onnx_runtime(path, threads)
    raise ModelError(f"{path}: no runtime for format '{fmt}'; install the plugin that runs it")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch with ``threads`` CPU threads inside the block, and give it its own count back afterwards."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
