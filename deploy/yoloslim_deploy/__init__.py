"""Deploy adapters (ONNX, TensorRT), their runtimes, and ``Detector``: one detection API over PyTorch, ONNX Runtime
and TensorRT.

>>> from yoloslim_deploy import Detector
>>> detections = Detector("best.onnx")(cv2.imread("frame.jpg"))
"""

from yoloslim_deploy.detector import Detections, Detector
from yoloslim_deploy.metadata import ModelMeta, read_metadata

__all__ = ["Detections", "Detector", "ModelMeta", "read_metadata"]
