#!/usr/bin/env bash
# GPU check of the deploy runtime, for a lent NVIDIA machine (see the `device` tool's README): PyTorch CUDA FP16
# against the ONNX file on the CPU, its latency at 640 px, and the ONNX export's parity. TensorRT is not installed on
# those machines and its wheels are too large to carry, so the TensorRT path is not built here (its tests skip).
#
# The GPU image has python3 with torch, onnx, onnxruntime and OpenCV but not Ultralytics or onnxslim: run
#     deploy/gpu_check.sh --prepare          # here: copies those pure-Python packages into runs/gpu_site/
# then, on the device (carry runs/gpu_site, about 14 MB):
#     deploy/gpu_check.sh                    # writes $OUT (default runs/gpu_check): gpu_check.json, gpu_check.log
# It also runs on a machine without a GPU: the CUDA rows are then recorded as skipped, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SITE=$ROOT/runs/gpu_site

if [[ "${1:-}" == "--prepare" ]]; then
    SRC=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf "$SITE" && mkdir -p "$SITE"
    for pkg in ultralytics onnxslim; do cp -r "$SRC/$pkg" "$SITE/"; done
    find "$SITE" -name __pycache__ -prune -exec rm -rf {} +
    du -sh "$SITE"
    exit 0
fi

PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/runs/gpu_check}
mkdir -p "$OUT"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR="$OUT/.yolo" MPLCONFIGDIR="$OUT/.mpl"
# The repository's packages without installing them (pip would try to resolve the pinned dependencies).
export PYTHONPATH="$ROOT:$ROOT/deploy:$ROOT/plugins${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
(nvidia-smi -L || echo "nvidia-smi: no GPU") 2>&1 | tee "$OUT/gpu_check.log"

$PY - "$OUT" <<'PYEOF' 2>&1 | tee -a "$OUT/gpu_check.log"
import json, sys, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "deploy/tests")
out = Path(sys.argv[1])
report = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "checks": {}}
checks = report["checks"]

from yoloslim.testing import synth_shapes as synth  # noqa: E402
data = synth.generate(out / "tiny", variant="tiny", seed=0)
from deploy_helpers import build_detecting_checkpoint  # noqa: E402  deploy/tests/deploy_helpers.py
ckpt = build_detecting_checkpoint(data, out / "detect.pt")

import cv2
import yoloslim_deploy.onnx_adapter as onnx_adapter
from yoloslim.context import SlimContext
from yoloslim.plugins import PluginManager
from yoloslim_deploy import Detector, read_metadata

# The adapters are registered by hand: without `pip install`, no entry points exist.
pm = PluginManager(load_entrypoints=False)
pm.register(onnx_adapter, "onnx")
ctx = SlimContext(imgsz=96, data=str(data), plugins=pm)
onnx_path = ctx.export(ckpt, "onnx", out / "detect.onnx")
checks["onnx_parity"] = read_metadata(onnx_path).yoloslim["parity"]

images = [cv2.imread(str(p)) for p in sorted((Path(data).parent / "images" / "val").iterdir())]
ref = Detector(onnx_path)(images)
if torch.cuda.is_available():
    gpu = Detector(ckpt, device="cuda")
    got = gpu(images)
    worst, matched, total = 0.0, 0, 0
    for a, b in zip(ref, got):
        total += len(a)
        for box, c in zip(a.xyxy, a.cls):
            same = b.xyxy[b.cls == c]
            if len(same):
                d = np.abs(same - box).max(1).min()
                matched += d <= 1.0
                worst = max(worst, float(d))
    checks["torch_cuda_fp16_vs_onnx_cpu"] = {"detections": total, "matched_within_1px": int(matched),
                                             "max_box_diff_px": worst}
    for imgsz, batch in ((640, 1), (640, 8)):
        model = Detector(ckpt, device="cuda", imgsz=imgsz)
        x = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
        for _ in range(10):
            model.runtime(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(50):
            start = time.perf_counter(); model.runtime(x); times.append(time.perf_counter() - start)
        checks[f"torch_cuda_fp16_latency_{imgsz}_b{batch}_ms"] = {
            "p50": 1000 * float(np.percentile(times, 50)), "p90": 1000 * float(np.percentile(times, 90)),
            "note": "numpy in, numpy out (host<->device copies included), random weights, yolov8n"}
else:
    checks["torch_cuda_fp16_vs_onnx_cpu"] = "skipped: torch.cuda.is_available() is False"
import onnxruntime as ort
checks["onnxruntime_providers"] = ort.get_available_providers()
if "CUDAExecutionProvider" in ort.get_available_providers():
    got = Detector(onnx_path, device="cuda")(images)
    checks["onnx_cuda_vs_cpu_max_box_diff_px"] = max(
        (float(np.abs(a.xyxy - b.xyxy).max()) for a, b in zip(ref, got) if len(a) and len(a) == len(b)), default=0.0)
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
PYEOF
