"""Channel allocation at equal measured latency: detection loss right after pruning, per latency exponent.

Prunes the bundled student to a latency budget (``target_latency``, FP32 ONNX at 640 px, 2 threads, Taylor importance)
with ``allocation: latency`` and ``LATENCY_EXPONENT`` = each given exponent (0 = importance alone, i.e. the
``importance`` allocation), then prints the GFLOPs kept, the detection loss on 32 training images (no fine-tuning;
lower is better) and the latency the budget search measured. Run on a quiet machine (the search times candidates).

    .venv/bin/python research/allocation_loss.py 0.65x 1.0 0.5 0
    .venv/bin/python research/allocation_loss.py 0.55x 1.0 0.5 0

Printed on 2026-12-02 (machine partly loaded by training; latency as ratios to the unpruned model, timed interleaved):
0.65x: exponent 1.0 -> GFLOPs 0.475, loss 10.375, 19.07/30.55 ms; 0.5 -> 0.498, 9.333, 18.75/28.98 ms;
0.25 -> 0.460, 9.393, 17.39/27.89 ms; 0 -> 0.484, 8.312, 16.39/26.09 ms.
0.55x: 1.0 -> 0.338, 10.623, 15.12/28.78 ms; 0.5 -> 0.326, 10.435, 14.04/26.18 ms; 0 -> 0.358, 8.865, 14.12/26.92 ms.
This is why ``importance`` is the default allocation (plugins/yoloslim_prune/README.md).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


def main() -> None:
    """Prune once per exponent and print one JSON line each."""
    import yoloslim_prune.latency as latency
    from yoloslim import load_checkpoint
    from yoloslim.context import SlimContext
    from yoloslim_prune.calibration import batch_loss, calibration_batches
    from yoloslim_prune.channel_pruner import gflops
    from yoloslim_prune.options import STAGE_TYPE
    from yoloslim_prune.pruning import prune_once

    budget, exponents = sys.argv[1], [float(e) for e in sys.argv[2:]]
    data = "datasets/generated/full/data.yaml"
    batches = calibration_batches(data, 256, 4)
    for exponent in exponents:
        latency.LATENCY_EXPONENT = exponent
        model, _ = load_checkpoint("weights/student_yolov8n.pt")
        model = model.float()
        before = gflops(model, 128)
        opts = STAGE_TYPE.parse(
            {"importance": "taylor", "allocation": "latency", "target_latency": budget, "latency_imgsz": 640},
            0,
            "allocation_loss",
        )
        ctx = SlimContext(imgsz=256, data=data)
        model = prune_once(model, opts, None, None, 256, batches, ctx)
        found = ctx.state["prune"]["latency"]["budget"]
        row = {
            "exponent": exponent,
            "gflops": round(gflops(model, 128) / before, 3),
            "loss": round(float(batch_loss(model, batches)), 3),
            "ms": found["measured_ms"],
            "reference_ms": found["reference_ms"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
