"""Agreement with the FP32 original: the quality measure where no human labels exist (real footage).

A compressed model's *agreement* is how well it reproduces the detections its FP32 original makes on the same
images. The original's own detections at ``conf`` (0.25, a deployment threshold; per-class NMS at IoU 0.7) are the
reference boxes; the candidate is scored against them exactly as a validator scores a model against labels:

- ``map50_95`` / ``map50``: the candidate's detections at conf 0.001 ranked against the reference boxes (COCO-style
  AP over IoU 0.50:0.95, Ultralytics' ``ap_per_class`` and its greedy matching), averaged over the classes the
  original detected;
- ``f1``: at the deployment threshold on both sides, a candidate box is a match when it has the class of an
  unmatched reference box and IoU >= 0.5 with it (highest score first); F1 = 2 x matches / (candidate + reference
  boxes), 1.0 when both are empty. ``precision`` and ``recall`` are its two halves.

It is never called accuracy: the FP32 original of a model scores 1.0 by construction. Any pair of formats works
(``.pt``, ``.onnx``, a plugin's runtime): both see the same letterboxed images and their raw outputs are decoded by
:func:`yoloslim.detections.decode`, whichever head layout they have (NMS or YOLO26's end-to-end).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from yoloslim.detections import decode

LOGGER = logging.getLogger("yoloslim.agreement")

REFERENCE_CONF = 0.25
MAP_CONF = 0.001
F1_IOU = 0.5


@dataclasses.dataclass
class Agreement:
    """Agreement of one candidate with the reference model on a set of images.

    Attributes:
        map50_95: mAP50-95 of the candidate against the reference's detections.
        map50: mAP50 likewise.
        f1: F1 at IoU 0.5 and the deployment threshold on both sides.
        precision: Matched / candidate boxes (1.0 when the candidate has none).
        recall: Matched / reference boxes (1.0 when the reference has none).
        reference_boxes: Reference detections in all images.
        candidate_boxes: Candidate detections at the deployment threshold in all images.
        images: Images scored.
    """

    map50_95: float
    map50: float
    f1: float
    precision: float
    recall: float
    reference_boxes: int
    candidate_boxes: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (N, 4), xyxy."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:4] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:4] - b[:, :2], 0, None).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def _match(reference: np.ndarray, candidate: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Which candidate boxes (sorted by score, descending) match a reference box at each IoU threshold.

    The greedy matching of Ultralytics' validator: each candidate, highest score first, claims the unclaimed
    reference box of its class with the highest IoU.
    """
    correct = np.zeros((len(candidate), len(thresholds)), dtype=bool)
    if not len(reference) or not len(candidate):
        return correct
    iou = _box_iou(reference[:, :4], candidate[:, :4]) * (reference[:, 5:6] == candidate[None, :, 5])
    claimed = np.zeros((len(reference), len(thresholds)), dtype=bool)
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, range(len(thresholds))] >= thresholds
        claimed[k, range(len(thresholds))] |= correct[j]
    return correct


def score(reference: Sequence[np.ndarray], low_conf: Sequence[np.ndarray], conf: float = REFERENCE_CONF) -> Agreement:
    """Agreement from decoded detections.

    Args:
        reference: Per image, the reference's ``(n, 6)`` detections at the deployment threshold.
        low_conf: Per image, the candidate's ``(m, 6)`` detections at conf 0.001 (sorted by score, descending).
        conf: The deployment threshold applied to ``low_conf`` for F1.
    """
    from ultralytics.utils.metrics import ap_per_class

    thresholds = np.linspace(0.5, 0.95, 10)
    tps, confs, pred_cls, target_cls = [], [], [], []
    matched = n_ref = n_cand = 0
    for ref, cand in zip(reference, low_conf):
        tps.append(_match(ref, cand, thresholds))
        confs.append(cand[:, 4])
        pred_cls.append(cand[:, 5])
        target_cls.append(ref[:, 5])
        kept = cand[cand[:, 4] > conf]
        matched += int(_match(ref, kept, np.array([F1_IOU]))[:, 0].sum())
        n_ref += len(ref)
        n_cand += len(kept)
    target = np.concatenate(target_cls) if target_cls else np.zeros(0)
    if len(target):
        ap = ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pred_cls), target)[5]
        map50_95, map50 = float(ap.mean()), float(ap[:, 0].mean())
    else:  # the reference found nothing: agreeing means finding nothing either
        map50_95 = map50 = 1.0 if n_cand == 0 else 0.0
    f1 = 1.0 if n_ref + n_cand == 0 else 2 * matched / (n_ref + n_cand)
    return Agreement(
        map50_95=map50_95,
        map50=map50,
        f1=f1,
        precision=matched / n_cand if n_cand else 1.0,
        recall=matched / n_ref if n_ref else 1.0,
        reference_boxes=n_ref,
        candidate_boxes=n_cand,
        images=len(reference),
    )


def compare(reference: np.ndarray, candidate: np.ndarray, nc: int, conf: float = REFERENCE_CONF) -> Agreement:
    """Agreement of raw outputs with the reference's raw outputs for the same images (one per row, either layout).

    Args:
        reference: The FP32 original's raw output, ``(N, 4 + nc, anchors)`` or ``(N, k, 6)``.
        candidate: The candidate's raw output for the same ``N`` images.
        nc: Number of classes.
        conf: Deployment threshold.
    """
    return score(decode(reference, nc, conf=conf), decode(candidate, nc, conf=MAP_CONF), conf)


def measure_agreement(
    reference: Callable[[np.ndarray], Any],
    candidates: Sequence[Callable[[np.ndarray], Any]],
    images: Sequence[np.ndarray],
    nc: int,
    conf: float = REFERENCE_CONF,
) -> list[Agreement]:
    """Agreement of each candidate runtime with the reference runtime on preprocessed images.

    Args:
        reference: Runtime of the FP32 original (float32 NCHW batch in, raw output out;
            :data:`yoloslim.measurement.Runtime`). It may also be one of the ``candidates`` (the original's own
            row): each runtime runs once per image.
        candidates: Runtimes of the models to score.
        images: Letterboxed ``(1, 3, H, W)`` float32 batches, one image each.
        nc: Number of classes (both models must have it).
        conf: Deployment threshold.
    """
    ref_dets, cand_dets = [], [[] for _ in candidates]
    for x in images:
        outputs: dict[int, np.ndarray] = {}
        for run in [reference, *candidates]:
            if id(run) not in outputs:
                outputs[id(run)] = _first(run(x))
        ref_dets.append(decode(outputs[id(reference)], nc, conf=conf)[0])
        for i, run in enumerate(candidates):
            cand_dets[i].append(decode(outputs[id(run)], nc, conf=MAP_CONF)[0])
    return [score(ref_dets, dets, conf) for dets in cand_dets]


def _first(output: Any) -> np.ndarray:
    """The first output of a runtime as a numpy array (runtimes return an array, a list of outputs, or a tensor)."""
    while isinstance(output, (list, tuple)):
        output = output[0]
    if hasattr(output, "detach"):
        output = output.detach().float().cpu().numpy()
    return np.asarray(output, dtype=np.float32)
