"""Run a TensorRT engine (TensorRT 10 name-based tensor API), with PyTorch's CUDA tensors as device buffers.

The engine file has Ultralytics' layout (4-byte length, JSON metadata, serialized engine), so ``YOLO(path)``
and :class:`TensorRTRuntime` read the same files. The runtime returns the engine's first output as it is, in
whichever layout the engine was built with (``(batch, 4 + classes, anchors)``, or ``(batch, k, 6)`` for YOLO26's
NMS-free head); the metadata's ``end2end`` says which, else the output's shape.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from yoloslim import ModelError, YoloslimError
from yoloslim_deploy.metadata import engine_header, from_ultralytics

LOGGER = logging.getLogger("yoloslim.deploy.tensorrt")


def require_tensorrt(error: type[YoloslimError], what: str) -> Any:
    """Import ``tensorrt`` (10.x) and check for a CUDA GPU, or raise ``error`` with one line saying what to install.

    Args:
        error: The yoloslim error type to raise (ExportError for building, ModelError for running).
        what: What needs TensorRT, for the message (``"building a TensorRT engine"``).
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        raise error(
            f"{what} needs the 'tensorrt' package (10.x), which is not installed; install it with "
            "pip install 'yoloslim[tensorrt]' on a machine with an NVIDIA GPU"
        ) from e
    if int(trt.__version__.split(".", 1)[0]) < 10:
        raise error(f"{what} needs TensorRT 10 or newer, found {trt.__version__}; pip install 'tensorrt>=10.1'")
    import torch

    if not torch.cuda.is_available():
        raise error(f"{what} needs an NVIDIA GPU, and PyTorch sees none; run it on a machine with CUDA")
    return trt


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int8: torch.int8,
        trt.int32: torch.int32,
        trt.int64: torch.int64,
        trt.bool: torch.bool,
    }
    if dtype not in table:
        raise ModelError(
            f"engine tensor type {dtype} is not supported by this runtime; build the engine from a "
            "float32 or float16 ONNX export"
        )
    return table[dtype]


class TensorRTRuntime:
    """A deserialized TensorRT engine with one execution context; callable on float32 NCHW numpy batches.

    Returns the first output as float32 numpy, in the engine's own layout (see the module's docstring).
    """

    def __init__(self, path: Path, device: str = "cuda:0"):
        import torch

        trt = require_tensorrt(ModelError, f"running '{path}'")
        self.device = device if ":" in device else f"cuda:{device if device.isdigit() else 0}"
        offset, raw_meta = engine_header(path)
        self.meta = from_ultralytics(raw_meta, Path(path))
        self.logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self.trt_runtime = trt.Runtime(self.logger)
            self.engine = self.trt_runtime.deserialize_cuda_engine(Path(path).read_bytes()[offset:])
            if self.engine is None:
                raise ModelError(
                    f"{path}: TensorRT could not deserialize the engine (built by another TensorRT "
                    "version or for another GPU); build it again on this machine"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        shape = tuple(self.engine.get_tensor_shape(self.inputs[0]))
        if shape[0] == -1:  # dynamic batch: the profile's maximum bounds a call
            _, _, largest = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
            self.meta.batch, self.meta.dynamic, self.max_batch = None, True, int(largest[0])
        else:
            self.meta.batch, self.meta.dynamic, self.max_batch = int(shape[0]), False, int(shape[0])
        self.stream = torch.cuda.Stream(device=self.device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        name = self.inputs[0]
        batch = torch.from_numpy(x).to(self.device, self.dtypes[name]).contiguous()
        self.context.set_input_shape(name, tuple(batch.shape))
        self.context.set_tensor_address(name, batch.data_ptr())
        outputs = []
        for out in self.outputs:
            buf = torch.empty(tuple(self.context.get_tensor_shape(out)), dtype=self.dtypes[out], device=self.device)
            self.context.set_tensor_address(out, buf.data_ptr())
            outputs.append(buf)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # the input copy is done
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ModelError("TensorRT execution failed; see the TensorRT log above")
        self.stream.synchronize()
        return outputs[0].float().cpu().numpy()
