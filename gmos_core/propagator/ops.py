"""Small tensor helpers of the propagator with the exact semantics of the official ``prop_utils`` /
``propagation`` helpers (gmos_reference.md §8.2). Pure functions, no SAM 2 dependency.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def _binarise_flat(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return (x > threshold).float().reshape(*x.shape[:-2], -1)


def compute_iou(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU over the last two dims after binarising both inputs with ``> threshold``.

    Broadcasts over leading dims; the denominator carries +1e-6 and two empty masks give IoU 1.0.
    """
    p = _binarise_flat(pred, threshold)
    g = _binarise_flat(gt, threshold)
    inter = (p * g).sum(-1)
    p_area, g_area = p.sum(-1), g.sum(-1)
    iou = inter / (p_area + g_area - inter + 1e-6)
    # Two empty masks agree perfectly (the official convention).
    iou[(p_area == 0) & (g_area == 0)] = 1.0
    return iou


def compute_precision(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """|pred ∩ gt| / (|pred| + 1e-6) over the last two dims (an empty ``pred`` gives 0)."""
    p = _binarise_flat(pred, threshold)
    g = _binarise_flat(gt, threshold)
    return (p * g).sum(-1) / (p.sum(-1) + 1e-6)


def batch_hungarian_match(
    pred: torch.Tensor,
    gt: torch.Tensor,
    tensors_to_reorder: Optional[Sequence[torch.Tensor]] = None,
):
    """IoU-based Hungarian assignment of ``pred`` rows to ``gt`` slots.

    Args:
        pred: (B, N, H, W); compared after ``sigmoid`` (so a 0/1 mask binarises to itself).
        gt: (B, M, H, W) with M <= N (zero-padded to N when smaller).
        tensors_to_reorder: optional (B, N, ...) tensors permuted like ``pred``.

    Returns:
        ``(matched_pred, matched_idx[, reordered])``: slot j (a gt index) receives the pred row assigned
        to it; slots without an assignment stay zero. ``matched_idx[b]`` is scipy's column index array.
    """
    from scipy.optimize import linear_sum_assignment

    if pred.dim() != 4 or gt.dim() != 4:
        raise ValueError(f"batch_hungarian_match expects 4-d (B,N,H,W) tensors, got pred {tuple(pred.shape)}, "
                         f"gt {tuple(gt.shape)}")
    B, N, H, W = pred.shape
    if gt.shape[0] != B or gt.shape[-2:] != (H, W) or gt.shape[1] > N:
        raise ValueError(f"batch_hungarian_match: gt must be (B={B}, M<={N}, {H}, {W}), got {tuple(gt.shape)}")
    if gt.shape[1] < N:
        gt = torch.cat([gt, torch.zeros(B, N - gt.shape[1], H, W, device=gt.device)], 1)
    iou_all = compute_iou(pred.sigmoid().unsqueeze(2), gt.unsqueeze(1))  # (B, N, N)

    matched_pred = torch.zeros_like(pred)
    matched_idx: List[np.ndarray] = []
    reordered = [torch.zeros_like(t) for t in tensors_to_reorder] if tensors_to_reorder is not None else None
    for b in range(B):
        rows, cols = linear_sum_assignment(1 - iou_all[b].detach().cpu().numpy())
        matched_pred[b, cols] = pred[b, rows]
        matched_idx.append(cols)
        if reordered is not None:
            for out, src in zip(reordered, tensors_to_reorder):
                out[b, cols] = src[b, rows]
    if reordered is not None:
        return matched_pred, matched_idx, reordered
    return matched_pred, matched_idx


def get_torch_hard_max(x: torch.Tensor, threshold: float = -1) -> torch.Tensor:
    """Per-pixel one-hot of the channel argmax of (B, C, H, W), kept where the max is > ``threshold``."""
    if x.dim() != 4:
        raise ValueError(f"get_torch_hard_max expects (B,C,H,W), got {tuple(x.shape)}")
    max_values, arg = torch.max(x, dim=1)
    one_hot = F.one_hot(arg, num_classes=x.shape[1]).permute(0, 3, 1, 2)
    return one_hot.to(x.dtype) * (max_values > threshold).unsqueeze(1).to(x.dtype)


def get_torch_priority_hard_max(x: torch.Tensor, priority: Sequence[float], threshold: float = 0.0) -> torch.Tensor:
    """Exclusive one-hot where each pixel goes to the *present* object (``x > threshold``) with the
    largest priority (ties: lowest channel); pixels without a present object are all zero."""
    if x.dim() != 4:
        raise ValueError(f"get_torch_priority_hard_max expects (B,C,H,W), got {tuple(x.shape)}")
    B, C, H, W = x.shape
    prio = torch.as_tensor(priority, device=x.device, dtype=torch.float32)
    if prio.shape != (C,):
        raise ValueError(f"get_torch_priority_hard_max: priority must have one entry per channel ({C}), "
                         f"got shape {tuple(prio.shape)}")
    present = x > threshold
    scored = torch.where(present, prio.view(1, C, 1, 1).expand(B, C, H, W),
                         torch.full((B, C, H, W), float("-inf"), device=x.device))
    one_hot = F.one_hot(scored.argmax(dim=1), num_classes=C).permute(0, 3, 1, 2)
    return one_hot.to(x.dtype) * present.any(dim=1, keepdim=True).to(x.dtype)


def compute_motion_labels(
    sam_masks: torch.Tensor,
    pred_motion_mask: torch.Tensor,
    pred_masks: torch.Tensor,
    pred_motions: torch.Tensor,
    n_pred: int,
    motion_precision_thres: float = 0.5,
) -> Tuple[np.ndarray, np.ndarray]:
    """Two motion signals per SAM object (official ``_compute_motion_labels``).

    Args:
        sam_masks: (n, 1, H, W) logits or one-hot; an object's mask is ``> 0``.
        pred_motion_mask: (H, W) union of the frame's moving proposals (0/1).
        pred_masks: (n_pred, H, W) the frame's proposal masks.
        pred_motions: (>= n_pred,) proposal motion probabilities.
        n_pred: number of real proposals on the frame.

    Returns:
        ``motion_global`` (n,) float32: 1.0 where precision(SAM mask, moving union) > thres, else 0.0;
        ``motion_per_obj`` (n,) float64: motion of the proposal that best contains the SAM mask
        (precision > thres), else 0.
    """
    binary = (sam_masks > 0)[:, 0]
    motion_global = (compute_precision(binary, pred_motion_mask[None]).float().cpu().numpy()
                     > motion_precision_thres).astype(np.float32)
    per_obj: List[float] = []
    for i in range(binary.shape[0]):
        if n_pred == 0:
            per_obj.append(0)
            continue
        prec = compute_precision(binary[i:i + 1], pred_masks).float().cpu().numpy()
        best = int(np.argmax(prec))
        per_obj.append(pred_motions[best].item() if prec[best] > motion_precision_thres else 0)
    return motion_global, np.stack(per_obj, 0) if per_obj else np.zeros((0,), dtype=np.float64)


def smooth_motions(m: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """5-tap temporal smoothing with weights for offsets [-2, -1, 0, +1, +2].

    Offset -k reads the value k frames in the future, +k the value k frames in the past; a copy that
    would read outside [0, T) keeps the current value. Result Σ w·copy / (Σ w + 1e-8).
    """
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"smooth_motions expects a (T, K) array, got shape {m.shape}")
    if len(weights) != 5:
        raise ValueError(f"smooth_motions expects 5 weights, got {len(weights)}")
    copies = []
    for c in range(5):
        off = c - 2
        arr = np.copy(m)
        if off < 0:
            arr[:off] = m[-off:]
        elif off > 0:
            arr[off:] = m[:-off]
        copies.append(arr)
    w = np.asarray(weights, dtype=np.float64)
    return (np.stack(copies, 0) * w[:, None, None]).sum(0) / (w.sum() + 1e-8)


def form_result_array(per_frame: Mapping[int, Mapping[int, object]], out: np.ndarray, num_frames: int) -> np.ndarray:
    """Fill ``out[t, obj_id]`` from a sparse ``{t: {obj_id: value}}`` dict (in place; returns ``out``)."""
    for t in range(num_frames):
        for obj_id, value in per_frame.get(t, {}).items():
            if obj_id >= out.shape[1]:
                raise IndexError(f"form_result_array: object id {obj_id} does not fit the result width {out.shape[1]}")
            out[t, obj_id] = value
    return out


def build_indexed_masks(per_frame: Mapping[int, Mapping[int, np.ndarray]], num_frames: int, height: int,
                        width: int) -> np.ndarray:
    """(T, H, W) uint8 label maps: Σ_objects mask·(obj_id + 1) per frame (frames without entries → 0)."""
    out = np.zeros((num_frames, height, width), dtype=np.uint8)
    for t in range(num_frames):
        if t not in per_frame:
            continue
        acc = np.zeros((height, width))
        for obj_id, mask in per_frame[t].items():
            acc += np.asarray(mask).reshape(height, width) * (obj_id + 1)
        out[t] = acc.astype(np.uint8)
    return out
