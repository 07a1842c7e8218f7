"""Propagator inputs from the proposer's labelling (gmos_reference.md §7.5, §8.4.1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .config import PropagatorConfig


@dataclass
class PropagatorInputs:
    """Per-frame proposals in the form the propagator consumes.

    Attributes:
        all_motions: (T, K) motion probability of label j+1 at column j.
        all_ious: (T, K) predicted IoU of label j+1 at column j.
        all_pred_masks: T arrays (N_t, H, W) bool, mask j = ``seq_annos[t] == j+1`` with N_t the largest
            label present in frame t (absent labels below N_t give empty masks).
        all_pred_motion_masks: (T, H, W) int64 union of the frame's moving proposals (0/1).
    """

    all_motions: np.ndarray
    all_ious: np.ndarray
    all_pred_masks: List[np.ndarray]
    all_pred_motion_masks: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.all_pred_masks)


def build_propagator_inputs(seq_annos: np.ndarray, pred_motions: np.ndarray, pred_ious: np.ndarray,
                            config: Optional[PropagatorConfig] = None) -> PropagatorInputs:
    """Official ``build_propagator_inputs``: label map + per-label scores → proposal masks.

    Args:
        seq_annos: (T, H, W) integer label map (0 = background, 1..M = proposals).
        pred_motions: (T, K, 1) or (T, K) motion probabilities per label (column j = label j+1).
        pred_ious: same shape, predicted IoUs.
    """
    config = config or PropagatorConfig()
    seq_annos = np.asarray(seq_annos)
    if seq_annos.ndim != 3 or not np.issubdtype(seq_annos.dtype, np.integer):
        raise ValueError(f"seq_annos must be an integer (T, H, W) label map, got {seq_annos.dtype} {seq_annos.shape}")
    motions = np.asarray(pred_motions)
    ious = np.asarray(pred_ious)
    if motions.ndim == 3:
        motions = motions[..., 0]
    if ious.ndim == 3:
        ious = ious[..., 0]
    T = seq_annos.shape[0]
    if motions.shape != ious.shape or motions.ndim != 2 or motions.shape[0] != T:
        raise ValueError(f"pred_motions / pred_ious must be (T={T}, K[, 1]) with equal shapes, got "
                         f"{np.shape(pred_motions)} and {np.shape(pred_ious)}")
    if T and int(seq_annos.max()) > motions.shape[1]:
        raise ValueError(f"seq_annos has label {int(seq_annos.max())} but the score arrays have only "
                         f"{motions.shape[1]} columns (one per label)")
    masks = [seq_annos[t, None] == (np.arange(int(seq_annos[t].max())) + 1)[:, None, None] for t in range(T)]
    motion_masks = np.stack(
        [((motions[t, :m.shape[0], None, None] > config.motion_thres) * m).sum(0).astype(np.int64)
         for t, m in enumerate(masks)], 0) if T else np.zeros((0,) + seq_annos.shape[1:], np.int64)
    return PropagatorInputs(all_motions=motions, all_ious=ious, all_pred_masks=masks,
                            all_pred_motion_masks=motion_masks)


def qualifying_scores(all_ious: np.ndarray, all_motions: np.ndarray,
                      config: Optional[PropagatorConfig] = None) -> np.ndarray:
    """q[t, j] = iou·[iou > iou_thres]·[motion > motion_thres]: confident moving proposals."""
    config = config or PropagatorConfig()
    return all_ious * (all_ious > config.iou_thres) * (all_motions > config.motion_thres)


def select_start_frame(all_ious: np.ndarray, all_motions: np.ndarray,
                       config: Optional[PropagatorConfig] = None) -> Tuple[Optional[int], np.ndarray]:
    """Official stage-1 start frame.

    Returns ``(start, q)``: ``start`` is None when no proposal is confident and moving; otherwise the
    first-max of Σ_j q over frames 0–2 if any of them qualifies, else the earliest qualifying frame.
    """
    all_ious = np.asarray(all_ious)
    all_motions = np.asarray(all_motions)
    if all_ious.shape != all_motions.shape or all_ious.ndim != 2:
        raise ValueError(f"select_start_frame expects two (T, K) arrays of equal shape, got {all_ious.shape} "
                         f"and {all_motions.shape}")
    q = qualifying_scores(all_ious, all_motions, config)
    if q.sum() == 0:
        return None, q
    first3 = q[0:3]
    if first3.sum() == 0:
        return int(np.where(q.sum(-1) > 0)[0][0]), q
    return int(np.argmax(first3.sum(-1))), q
