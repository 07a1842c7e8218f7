"""Post-processing of the heads' outputs, as the official pipeline does it.

Proposer (reference §7.3–7.4): keep the top-20 queries by motion logit, upsample their mask logits to the
video size, per-pixel hard max (arg-max slot, kept only where its logit > 0), then label slots that are
non-empty somewhere: label = 1 + rank among the non-empty slots. ``label_proposals`` does this over a whole
video (the official offline labelling); ``label_frame_proposals`` applies the same rule to a single frame
(the variant a streaming engine can use: labels are then per-frame ranks, not persistent ids).

GMOS-S (§10): prob = sigmoid(bilinear upsample of fg_mask); 8-bit = truncation of prob·255; mask = prob > 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

TOP_K = 20  # proposals kept per frame (min(20, num_obj_tokens))


def get_numpy_hard_max(mask: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """One-hot (C,H,W) of the per-pixel arg-max channel (first max on ties), kept where max > threshold."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"get_numpy_hard_max expects (C, H, W), got shape {mask.shape}")
    winner = mask.argmax(axis=0)
    keep = mask.max(axis=0) > threshold
    onehot = np.zeros_like(mask)
    np.put_along_axis(onehot, winner[None], 1, axis=0)
    return onehot * keep[None].astype(mask.dtype)


def hard_max_slots(mask: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Slot index map (H,W) int16 of :func:`get_numpy_hard_max`, -1 where no slot wins (memory-light form)."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"hard_max_slots expects (C, H, W), got shape {mask.shape}")
    winner = mask.argmax(axis=0).astype(np.int16)
    winner[~(mask.max(axis=0) > threshold)] = -1
    return winner


@dataclass
class FrameProposals:
    """Top-K proposals of one frame at video resolution (slots ordered by motion, descending).

    masks: (K, H, W) float32 logits; motions: (K,) sigmoid(motion logit); ious: (K,) raw iou_pred;
    query_indices: (K,) the proposer query index of each slot.
    """

    masks: np.ndarray
    motions: np.ndarray
    ious: np.ndarray
    query_indices: np.ndarray


def select_top_proposals(outputs: dict, video_hw: tuple[int, int], k: int = TOP_K) -> list[FrameProposals]:
    """Official per-batch step: top-k queries by motion logit (sorted descending), gather masks / motion /
    iou, bilinear (align_corners False) upsample to ``video_hw``. Returns one FrameProposals per batch item."""
    import torch
    import torch.nn.functional as F

    for key in ("mask", "motion_logits", "iou_pred"):
        if key not in outputs:
            raise ValueError(f"proposer outputs lack {key!r} (got keys {sorted(outputs)})")
    motion_logits = outputs["motion_logits"][..., 0]
    k = min(k, motion_logits.shape[1])
    with torch.no_grad():
        _, idx = torch.topk(motion_logits, k, dim=1)
        masks = torch.gather(outputs["mask"], 1, idx[:, :, None, None].expand(-1, -1, *outputs["mask"].shape[-2:]))
        motions = torch.sigmoid(torch.gather(motion_logits, 1, idx))
        ious = torch.gather(outputs["iou_pred"][..., 0], 1, idx)
        masks = F.interpolate(masks.float(), size=tuple(video_hw), mode="bilinear", align_corners=False)
    return [FrameProposals(masks=masks[b].cpu().numpy(), motions=motions[b].float().cpu().numpy(),
                           ious=ious[b].float().cpu().numpy(), query_indices=idx[b].cpu().numpy())
            for b in range(masks.shape[0])]


@dataclass
class ProposalLabels:
    """Official ``seq_annos`` and per-label scores.

    seq_annos: (T, H, W) uint8 label maps (0 = background); pred_motions / pred_ious: (T, K, 1) float32 with
    the value of the slot holding label j+1 at index j (0 for unused labels); label_slots: slot index of each
    label (label j+1 -> label_slots[j]).
    """

    seq_annos: np.ndarray
    pred_motions: np.ndarray
    pred_ious: np.ndarray
    label_slots: np.ndarray


class ProposalLabeler:
    """Whole-video labelling, fed frame by frame (only an int16 slot map per frame is kept)."""

    def __init__(self, k: int = TOP_K, threshold: float = 0.0) -> None:
        self.k = k
        self.threshold = threshold
        self._slot_maps: list[np.ndarray] = []
        self._motions: list[np.ndarray] = []
        self._ious: list[np.ndarray] = []

    def add(self, masks: np.ndarray, motions: np.ndarray, ious: np.ndarray) -> None:
        masks = np.asarray(masks)
        motions = np.asarray(motions, dtype=np.float32).reshape(-1)
        ious = np.asarray(ious, dtype=np.float32).reshape(-1)
        if masks.ndim != 3 or masks.shape[0] != motions.shape[0] or masks.shape[0] != ious.shape[0]:
            raise ValueError(f"frame proposals disagree: masks {masks.shape}, motions {motions.shape}, "
                             f"ious {ious.shape} (expected (K,H,W), (K,), (K,))")
        if masks.shape[0] > self.k:
            raise ValueError(f"at most {self.k} proposals per frame, got {masks.shape[0]}")
        if self._slot_maps and masks.shape[1:] != self._slot_maps[0].shape:
            raise ValueError(f"frame size {masks.shape[1:]} differs from the first frame {self._slot_maps[0].shape}")
        self._slot_maps.append(hard_max_slots(masks, self.threshold))
        self._motions.append(motions)
        self._ious.append(ious)

    def finalize(self) -> ProposalLabels:
        if not self._slot_maps:
            raise ValueError("no frames were added")
        maps = np.stack(self._slot_maps)
        used = np.unique(maps[maps >= 0])  # slots non-empty in at least one frame, ascending
        lut = np.zeros(self.k + 1, dtype=np.uint8)  # index slot+1 (0 = background)
        lut[used + 1] = np.arange(1, len(used) + 1, dtype=np.uint8)
        seq_annos = lut[maps + 1]
        t = maps.shape[0]
        pred_motions = np.zeros((t, self.k, 1), dtype=np.float32)
        pred_ious = np.zeros((t, self.k, 1), dtype=np.float32)
        for f in range(t):
            n = len(self._motions[f])
            valid = used[used < n]
            pred_motions[f, : len(valid), 0] = self._motions[f][valid]
            pred_ious[f, : len(valid), 0] = self._ious[f][valid]
        return ProposalLabels(seq_annos=seq_annos, pred_motions=pred_motions, pred_ious=pred_ious,
                              label_slots=used.astype(np.int64))


def label_proposals(frames: Iterable[FrameProposals], k: int = TOP_K) -> ProposalLabels:
    """Official whole-video labelling of per-frame top-K proposals (``seq_annos``, ``pred_motions``,
    ``pred_ious``)."""
    labeler = ProposalLabeler(k)
    for fp in frames:
        labeler.add(fp.masks, fp.motions, fp.ious)
    return labeler.finalize()


def label_frame_proposals(frame: FrameProposals, k: int = TOP_K) -> ProposalLabels:
    """The official rule applied to one frame (streaming): returns T=1 arrays."""
    return label_proposals([frame], k)


# ----------------------------------------------------------------------------------------------- GMOS-S
def gmos_s_probability(fg_mask, video_hw: tuple[int, int]) -> np.ndarray:
    """fg_mask logits (B,1,h,w) tensor -> foreground probability (B,H,W) float32 numpy at video size."""
    import torch
    import torch.nn.functional as F

    if fg_mask.ndim != 4 or fg_mask.shape[1] != 1:
        raise ValueError(f"fg_mask must be (B, 1, h, w), got {tuple(fg_mask.shape)}")
    with torch.no_grad():
        up = F.interpolate(fg_mask.float(), size=tuple(video_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(up)[:, 0].cpu().numpy()


def probability_to_u8(prob: np.ndarray) -> np.ndarray:
    """The official 8-bit probability PNG value: uint8(clip(prob·255, 0, 255)) — truncation, not rounding."""
    return np.clip(np.asarray(prob, dtype=np.float32) * 255, 0, 255).astype(np.uint8)


def probability_to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Foreground mask: prob > 0.5 (bool)."""
    return np.asarray(prob) > threshold
