"""Helpers of the deploy tests (the project's shared helpers are in ``tests/yoloslim_test_support.py``).

A one-epoch checkpoint (``tests``' ``tiny_ckpt``) is useless for comparing detections: its batch-norm statistics
are still the initial ones, every activation near the head is almost constant, and all class scores sit within
1e-6 of each other, below any threshold. ``detect_ckpt`` builds instead a yolov8n whose detections are confident
and depend on the image: random weights (seeded), batch-norm statistics recomputed on the tiny images, and the
class convolutions re-centred so a few percent of anchors are confident. It is not accurate, but it gives about
twenty distinct, image-dependent boxes per image, which is what runtime parity needs. The same recipe builds YOLO11
and YOLO26 models (``cfg``); a YOLO26 head's one-to-one branch gets its own weights, so its NMS-free detections are
not a copy of the one-to-many branch's.
"""

from __future__ import annotations

from pathlib import Path

DETECT_IMGSZ = 96
GEN_IMGSZ = 64  # the YOLO11/YOLO26 checkpoints: 84 anchors, so an end-to-end export keeps k = 84


def build_detecting_checkpoint(
    data: Path, out: Path, imgsz: int = DETECT_IMGSZ, seed: int = 0, cfg: str = "yolov8n.yaml"
) -> Path:
    """Write a checkpoint of Ultralytics model ``cfg`` for ``data``'s classes whose outputs are confident and
    image-dependent."""
    import numpy as np
    import torch
    import yaml
    from ultralytics.nn.tasks import DetectionModel

    from yoloslim.checkpoint import save_checkpoint
    from yoloslim.measurement import model_input

    names = yaml.safe_load(Path(data).read_text())["names"]
    names = names if isinstance(names, dict) else dict(enumerate(names))
    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=len(names), verbose=False)
    model.names = {int(k): v for k, v in names.items()}
    images = sorted(p for p in (Path(data).parent / "images").rglob("*") if p.suffix in {".jpg", ".png"})
    x = torch.from_numpy(np.concatenate([model_input(imgsz, p) for p in images]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 8):
            model(x[i : i + 8])
        # Class logits: the bias init (-6 to -9) would hide everything; centred at -2 with twice the spread, ~20
        # anchors per image clear 0.25 and none saturates at 1.0 (saturated scores tie, and ties make NMS arbitrary).
        # A one-to-one (NMS-free) branch keeps every confident anchor, so it is centred lower, at -3; it starts as a
        # copy of the one-to-many branch, and noise on its last convolutions makes its detections its own.
        head = model.model[-1]
        one2one = [getattr(head, name, None) or () for name in ("one2one_cv2", "one2one_cv3")]
        for branch, bias in (*((b, -2.0) for b in head.cv3), *((b, -3.0) for b in one2one[1])):
            branch[-1].weight.mul_(2.0)
            branch[-1].bias.fill_(bias)
        for branch in (*one2one[0], *one2one[1]):
            branch[-1].weight.add_(0.5 * branch[-1].weight.std() * torch.randn_like(branch[-1].weight))
    model.eval()
    return save_checkpoint(model, out, train_args={"imgsz": imgsz, "data": str(data)})


def box_iou(a, b):
    """IoU matrix of two sets of xyxy boxes (numpy arrays)."""
    import numpy as np

    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def assert_same_detections(a, b, k: int | None = None, iou: float = 0.95, conf_tol: float = 1e-3) -> int:
    """Assert that two :class:`Detections` of one image agree, and return how many detections were matched.

    Every detection of each has a twin in the other: same class, IoU >= ``iou`` (or every coordinate within 0.5 px,
    for boxes clipped to nothing), confidence within ``conf_tol``; twins are one to one (boxes clipped to the image
    can coincide: any assignment of twins will do).
    ``k``: the top-k of an end-to-end model; when a list holds all ``k``, detections of the other within ``conf_tol``
    of its lowest confidence are exempt, since near-equal scores may have swapped places across the cut.
    """
    import numpy as np

    if k is None or max(len(a), len(b)) < k:
        assert len(a) == len(b)
    matched = 0
    for x, y in ((a, b), (b, a)):
        keep = x.conf > y.conf.min() + conf_tol if k is not None and len(y) == k else np.ones(len(x), bool)
        if not keep.any():
            continue
        assert len(y)
        with np.errstate(invalid="ignore"):  # a box clipped to zero area has no IoU
            overlap = box_iou(x.xyxy[keep], y.xyxy) >= iou
        overlap |= np.abs(x.xyxy[keep][:, None] - y.xyxy[None]).max(2) <= 0.5
        candidate = overlap & (x.cls[keep][:, None] == y.cls[None, :])
        twin = candidate & (np.abs(x.conf[keep][:, None] - y.conf[None, :]) <= conf_tol)
        assert _perfect_matching(twin)
        matched = max(matched, int(keep.sum()))
    return matched


def _perfect_matching(allowed) -> bool:
    """Whether every row of a boolean matrix can be paired with its own column (Kuhn's augmenting paths)."""
    owner: dict[int, int] = {}

    def place(row: int, seen: set[int]) -> bool:
        for col in map(int, allowed[row].nonzero()[0]):
            if col not in seen:
                seen.add(col)
                if col not in owner or place(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    return all(place(row, set()) for row in range(len(allowed)))
