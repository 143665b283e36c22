"""Deploy adapters (ONNX, TensorRT) and runtimes for yoloslim."""
