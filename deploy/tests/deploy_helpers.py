"""Helpers of the deploy tests (the project's shared helpers are in ``tests/yoloslim_test_support.py``).

A one-epoch checkpoint (``tests``' ``tiny_ckpt``) is useless for comparing detections: its batch-norm statistics
are still the initial ones, every activation near the head is almost constant, and all class scores sit within
1e-6 of each other, below any threshold. ``detect_ckpt`` builds instead a yolov8n whose detections are confident
and depend on the image: random weights (seeded), batch-norm statistics recomputed on the tiny images, and the
class convolutions re-centred so a few percent of anchors are confident. It is not accurate, but it gives about
twenty distinct, image-dependent boxes per image, which is what runtime parity needs.
"""

from __future__ import annotations

from pathlib import Path

DETECT_IMGSZ = 96


def build_detecting_checkpoint(data: Path, out: Path, imgsz: int = DETECT_IMGSZ, seed: int = 0) -> Path:
    """Write a yolov8n checkpoint for ``data``'s classes whose outputs are confident and image-dependent."""
    import numpy as np
    import torch
    import yaml
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim.checkpoint import save_checkpoint
    from yoloslim.measure import latency_image

    names = yaml.safe_load(Path(data).read_text())["names"]
    names = names if isinstance(names, dict) else dict(enumerate(names))
    torch.manual_seed(seed)
    model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    model.names = {int(k): v for k, v in names.items()}
    images = sorted(p for p in (Path(data).parent / "images").rglob("*") if p.suffix in {".jpg", ".png"})
    x = torch.from_numpy(np.concatenate([latency_image(imgsz, p) for p in images]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 8):
            model(x[i:i + 8])
        # Class logits: the bias init (-6 to -9) would hide everything; centred at -2 with twice the spread, ~20
        # anchors per image clear 0.25 and none saturates at 1.0 (saturated scores tie, and ties make NMS arbitrary).
        for branch in model.model[-1].cv3:
            branch[-1].weight.mul_(2.0)
            branch[-1].bias.fill_(-2.0)
    model.eval()
    return save_checkpoint(model, out, train_args={"imgsz": imgsz, "data": str(data)})
