"""Pruning for yoloslim: unstructured, channel and depth pruning of Ultralytics YOLO detectors."""
