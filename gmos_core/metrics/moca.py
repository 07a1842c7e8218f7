"""MoCA detection success rate (SR) on bounding boxes.

MoCA (Lamdouar, Yang, Xie, Zisserman, "Betrayed by Motion: Camouflaged Object Discovery via Motion
Segmentation", ACCV 2020) annotates one box per frame.  A segmentation is scored by turning the predicted
foreground into its tight bounding box and counting a frame as a success when the box IoU with the ground
truth exceeds a threshold tau; SR(tau) = successes / annotated frames, reported for tau = 0.5 ... 0.9 in steps
of 0.1 together with their mean (the protocol used by the motion-segmentation papers that followed, e.g. Yang
et al., "Self-supervised Video Object Segmentation by Motion Grouping", ICCV 2021).  A frame whose prediction
is empty counts as a failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["SR_THRESHOLDS", "mask_to_box", "box_iou", "success_rates", "SuccessRate"]

SR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x0, y0, x1, y1) of a binary mask in pixel-edge coordinates, or None if empty."""
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


@dataclass
class SuccessRate:
    thresholds: tuple[float, ...]
    per_threshold: list[float]
    box_ious: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_threshold))

    def summary(self) -> dict:
        return {
            "SR_mean": self.mean,
            "SR_per_threshold": dict(zip([f"{t:.1f}" for t in self.thresholds], self.per_threshold)),
            "n_frames": len(self.box_ious),
        }


def success_rates(
    pred_masks: Sequence[np.ndarray],
    gt_boxes: Sequence[Sequence[float]],
    thresholds: Sequence[float] = SR_THRESHOLDS,
) -> SuccessRate:
    """SR over frames: pred_masks[i] (H, W) foreground, gt_boxes[i] = (x0, y0, x1, y1)."""
    if len(pred_masks) != len(gt_boxes):
        raise ValueError(f"{len(pred_masks)} predicted masks but {len(gt_boxes)} ground-truth boxes")
    if not gt_boxes:
        raise ValueError("no annotated boxes to evaluate")
    ious = []
    for mask, gt in zip(pred_masks, gt_boxes):
        if len(gt) != 4:
            raise ValueError(f"ground-truth box {gt!r} is not (x0, y0, x1, y1)")
        box = mask_to_box(mask)
        ious.append(0.0 if box is None else box_iou(box, gt))
    arr = np.asarray(ious)
    return SuccessRate(tuple(thresholds), [float((arr > t).mean()) for t in thresholds], ious)
