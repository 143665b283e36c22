"""Runtimes: one callable per model format, float32 NCHW batch in, raw detection output out.

A runtime is what :class:`yoloslim_deploy.Detector` runs and what ``yoloslim_open_runtime`` hands the
measurement harness: ``runtime(x)`` takes a letterboxed RGB batch in ``[0, 1]`` and returns the model's first
raw output as float32 numpy, in either layout :mod:`yoloslim.detections` decodes: ``(batch, 4 + classes, anchors)``
(NMS after the model), or ``(batch, k, 6)`` (YOLO26's NMS-free end-to-end head). ``runtime.meta`` says what the
model needs (class names, input size, fixed batch, the layout when known), ``runtime.device`` where it runs.

An exported file's layout was fixed by its export (``nms=False`` selects the end-to-end head); a ``.pt``
checkpoint runs the head ``end2end`` selects, by default the one-to-many head with NMS after it, as Ultralytics'
default export does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yoloslim import ModelError
from yoloslim_deploy.metadata import ModelMeta, read_metadata


def is_cuda(device: str) -> bool:
    """Whether an Ultralytics-style device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"0"``) names a GPU."""
    device = str(device).lower()
    return device.startswith("cuda") or device.isdigit()


def cuda_index(device: str) -> int:
    """GPU index of a device string (``"cuda"`` -> 0, ``"cuda:1"`` / ``"1"`` -> 1)."""
    device = str(device).lower()
    tail = device.split(":", 1)[1] if ":" in device else (device if device.isdigit() else "0")
    return int(tail)


class TorchRuntime:
    """A ``.pt`` checkpoint in PyTorch: fused, eval, FP16 on a GPU and FP32 on the CPU.

    ``end2end=True`` runs a YOLO26 head's NMS-free one-to-one branch (output ``(batch, k, 6)``, what an
    ``nms=False`` export runs); ``False``/``None`` runs the one-to-many branch (``(batch, 4 + classes, anchors)``,
    what the default export runs). A head without a one-to-one branch (YOLOv8, YOLO11) always gives the latter.
    ``trust=True`` unpickles the checkpoint without the safe-load allowlist (``None``: the
    ``YOLOSLIM_TRUST_CHECKPOINTS`` environment variable decides).
    """

    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        threads: int | None = None,
        end2end: bool | None = None,
        trust: bool | None = None,
    ):
        import torch

        from yoloslim import load_checkpoint

        model, ckpt = load_checkpoint(path, trust=trust)
        if hasattr(model, "end2end"):  # before fusing: fuse() drops the branch that is not selected
            model.end2end = bool(end2end)
        model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
        if is_cuda(device):
            if not torch.cuda.is_available():
                raise ModelError(f"{path}: device '{device}' asked for but PyTorch sees no CUDA GPU; pass device='cpu'")
            self.device = f"cuda:{cuda_index(device)}"
            model = model.to(self.device).half()
        else:
            self.device = "cpu"
            if threads:
                torch.set_num_threads(threads)
        self.model = model.eval()
        self.dtype = next(model.parameters()).dtype
        imgsz = (ckpt.get("train_args") or {}).get("imgsz", 640)
        imgsz = imgsz if isinstance(imgsz, int) else 640
        names = model.names if isinstance(model.names, dict) else dict(enumerate(model.names))
        self.meta = ModelMeta(
            names={int(k): str(v) for k, v in names.items()},
            imgsz=(imgsz, imgsz),
            stride=int(max(model.stride)),
            batch=None,
            dynamic=True,
            precision="fp16" if self.dtype == torch.float16 else "fp32",
            end2end=bool(getattr(model, "end2end", False)),
            yoloslim=ckpt.get("yoloslim") or {},
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model(torch.from_numpy(x).to(self.device, self.dtype))
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float().cpu().numpy()


class OnnxRuntime:
    """An ``.onnx`` file in ONNX Runtime (the ``onnxruntime`` library), on the CPU or the CUDA execution provider."""

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        self.meta = read_metadata(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if is_cuda(device):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError(
                    f"{path}: device '{device}' needs ONNX Runtime's CUDA provider, which this install lacks; "
                    "install onnxruntime-gpu or pass device='cpu'"
                )
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": cuda_index(device)})]
            self.device = f"cuda:{cuda_index(device)}"
        else:
            providers = ["CPUExecutionProvider"]
            self.device = "cpu"
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:
            raise ModelError(f"{path}: ONNX Runtime cannot open it ({type(e).__name__}); export it again") from e
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_dtype = np.float16 if graph_input.type == "tensor(float16)" else np.float32
        batch = graph_input.shape[0]
        self.meta.batch = batch if isinstance(batch, int) else None
        self.meta.dynamic = self.meta.batch is None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(None, {self.input_name: x.astype(self.input_dtype, copy=False)})[0]
        return np.asarray(y, dtype=np.float32)


def open_runtime(
    path: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    end2end: bool | None = None,
    trust: bool | None = None,
) -> Any:
    """Open a model file with the runtime of its format.

    Args:
        path: ``.pt`` (PyTorch), ``.onnx`` (ONNX Runtime) or ``.engine`` (TensorRT).
        device: ``"cpu"`` or a GPU (``"cuda"``, ``"cuda:0"``, ``"0"``); an ``.engine`` always runs on a GPU.
        threads: CPU threads for the CPU runtimes (default: the library's own choice).
        end2end: For a ``.pt``, run YOLO26's NMS-free one-to-one head (default: the one-to-many head, like the
            default export). An exported file's layout is its own; a value that contradicts it is an error.
        trust: For a ``.pt``, unpickle it without the safe-load allowlist (only for a file whose origin you trust);
            ``None`` follows ``YOLOSLIM_TRUST_CHECKPOINTS``. Exported files are not pickles and need no trust.

    Raises:
        ModelError: If the file is missing, unreadable, of an unknown format, the device is unavailable, or
            ``end2end`` contradicts an exported file's layout.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; pass an existing .pt, .onnx or .engine file")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return TorchRuntime(path, device, threads, end2end, trust=trust)
    if suffix == ".onnx":
        runtime = OnnxRuntime(path, device, threads)
    elif suffix == ".engine":
        from yoloslim_deploy.tensorrt_runtime import TensorRTRuntime

        runtime = TensorRTRuntime(path, device if is_cuda(device) else "cuda:0")
    else:
        raise ModelError(f"{path}: unknown model format '{suffix}'; pass a .pt, .onnx or .engine file")
    if end2end is not None and runtime.meta.end2end is not None and bool(end2end) != runtime.meta.end2end:
        layout = "NMS-free end-to-end (batch, k, 6)" if runtime.meta.end2end else "(batch, 4 + classes, anchors)"
        raise ModelError(
            f"{path}: the export's output is the {layout} layout but end2end={end2end} was asked for; "
            "leave end2end unset, or export again (nms=False gives YOLO26's end-to-end layout)"
        )
    return runtime
