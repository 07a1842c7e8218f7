"""Proposer outputs → labelled proposals, in the official order of operations (§7.3, §7.4).

Per frame: top-K queries by motion logit (sorted descending), their masks bilinearly upsampled
(align_corners=False) to the source size, a hard max over the K slots (first max on ties, kept where the max
logit > 0) → a slot map. Labelling: the official labels the whole video at once (slots non-empty in *any*
frame, ascending → 1..M); the streaming (online) path can only label what it has seen, so it labels each
frame on its own (slots non-empty in that frame). Both map slot scores to label columns the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NO_SLOT = 255  # slot-map value for pixels no proposal owns


@dataclass
class FrameProposals:
    """One frame's top-K proposals after the hard max.

    slot_map: (H, W) uint8 slot index 0..K-1 owning each pixel, NO_SLOT where no logit > 0
    motions:  (K,) float32 sigmoid(motion logit) per slot (sorted by motion, descending)
    ious:     (K,) float32 raw iou_pred per slot
    """

    slot_map: np.ndarray
    motions: np.ndarray
    ious: np.ndarray

    @property
    def present_slots(self) -> np.ndarray:
        """Slots owning at least one pixel, ascending."""
        counts = np.bincount(self.slot_map.reshape(-1), minlength=256)[: len(self.motions)]
        return np.nonzero(counts)[0]


def top_k_proposals(outputs: dict, k: int, video_hw: tuple[int, int]) -> list[FrameProposals]:
    """Batch of proposer outputs (mask (B,Q,h,w) logits, motion_logits (B,Q,1), iou_pred (B,Q,1)) → per-frame
    FrameProposals at the source resolution."""
    import torch
    import torch.nn.functional as F

    masks, motion_logits, iou_pred = outputs["mask"], outputs["motion_logits"], outputs["iou_pred"]
    if masks.ndim != 4 or motion_logits.shape[:2] != masks.shape[:2]:
        raise ValueError(f"unexpected proposer output shapes: mask {tuple(masks.shape)}, "
                         f"motion_logits {tuple(motion_logits.shape)}")
    k = min(k, masks.shape[1])
    _, order = torch.topk(motion_logits[..., 0], k, dim=1)  # sorted descending
    index = order[:, :, None, None].expand(-1, -1, *masks.shape[-2:])
    top_masks = torch.gather(masks, 1, index)
    top_motion = torch.gather(motion_logits, 1, order[..., None])
    top_iou = torch.gather(iou_pred, 1, order[..., None])
    up = F.interpolate(top_masks.float(), size=tuple(video_hw), mode="bilinear", align_corners=False)
    best, slot = up.max(dim=1)  # first max on ties, like numpy argmax
    slot_map = torch.where(best > 0, slot, torch.full_like(slot, NO_SLOT)).to(torch.uint8).cpu().numpy()
    motions = torch.sigmoid(top_motion[..., 0].float()).cpu().numpy().astype(np.float32)
    ious = top_iou[..., 0].float().cpu().numpy().astype(np.float32)
    return [FrameProposals(slot_map[b], motions[b], ious[b]) for b in range(masks.shape[0])]


def _labels_from_slots(slot_map: np.ndarray, slots: np.ndarray) -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    lut[slots] = np.arange(1, len(slots) + 1, dtype=np.uint8)
    return lut[slot_map]


def label_frame(proposals: FrameProposals, num_columns: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streaming labelling of one frame: slots present in this frame, ascending → labels 1..M.

    Returns (label map (H,W) uint8, motions (num_columns,), ious (num_columns,)) with column j = label j+1.
    """
    slots = proposals.present_slots
    labels = _labels_from_slots(proposals.slot_map, slots)
    motions = np.zeros(num_columns, np.float32)
    ious = np.zeros(num_columns, np.float32)
    motions[: len(slots)] = proposals.motions[slots]
    ious[: len(slots)] = proposals.ious[slots]
    return labels, motions, ious


def label_video(frames: Sequence[FrameProposals], num_columns: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official whole-video labelling (§7.4): slots non-empty in any frame, ascending → labels 1..M; every
    frame uses that mapping. Returns seq_annos (T,H,W) uint8, pred_motions (T,C,1), pred_ious (T,C,1)."""
    if not frames:
        raise ValueError("label_video: no frames")
    used = np.zeros(256, dtype=bool)
    for f in frames:
        used[f.present_slots] = True
    slots = np.nonzero(used)[0]
    seq_annos = np.stack([_labels_from_slots(f.slot_map, slots) for f in frames])
    pred_motions = np.zeros((len(frames), num_columns, 1), np.float32)
    pred_ious = np.zeros((len(frames), num_columns, 1), np.float32)
    for t, f in enumerate(frames):
        pred_motions[t, : len(slots), 0] = f.motions[slots]
        pred_ious[t, : len(slots), 0] = f.ious[slots]
    return seq_annos, pred_motions, pred_ious
