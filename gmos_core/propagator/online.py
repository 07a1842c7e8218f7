"""Causal, streaming propagator (MOS-I on a live stream) with bounded memory.

The official stage 1 (two_stage.py) needs the whole video: it looks ahead to frames 0–2 for its start frame
and tracks frames before it backwards from later memory. :class:`OnlinePropagator` applies the same
per-frame rules causally, one frame at a time, as soon as that frame's proposals are known:

1. **Seed** from the confident moving proposals (motion > ``motion_thres`` and iou > ``iou_thres``) of the
   first frame that has any (also whenever no track exists).
2. Afterwards, per frame: track every object with SAM 2's memory; Hungarian-match the proposals to the
   tracked masks; **Case 1** re-inforce an object whose matched proposal has IoU > ``match_iou_thres``
   (at most every ``min_prompt_frame_distance`` frames); **Case 2** start a new track for a confident moving
   proposal that no tracked mask covers (max precision < ``min_precision_thres``, < ``max_objects`` tracks).
3. Per object and frame: moving iff more than ``motion_precision_thres`` of its mask lies in the union of the
   frame's moving proposals (the official ``motion_global``); otherwise static.

SAM 2 is driven frame by frame here (frames are appended to the inference state as they arrive) instead of
through ``propagate_in_video``, and everything older than what SAM 2 can still attend to is pruned, so the
retained state is bounded on an endless stream (see :meth:`OnlinePropagator.retained_state_size`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from .config import PropagatorConfig
from .ops import (batch_hungarian_match, compute_iou, compute_motion_labels, compute_precision,
                  get_torch_hard_max)
from .predictor import as_gmos_predictor, compute_context, init_state_from_features, install_fp32_memory_shim

# A causal tracker does not know the video length; SAM 2 only uses it to bound look-ups and the number of
# object pointers (min(num_frames, max_obj_ptrs_in_encoder)), so "unbounded" keeps the full pointer window.
_UNBOUNDED_NUM_FRAMES = 2 ** 31 - 1


@dataclass
class FrameProposals:
    """One frame's proposals (the proposer's labelled masks) in video resolution.

    Attributes:
        masks: (N, H, W) bool proposal masks.
        motions: (N,) motion probabilities.
        ious: (N,) predicted IoUs.
        moving_union: (H, W) bool union of the moving proposals; derived from ``masks`` and ``motions``
            (``motion > motion_thres``) when None.
    """

    masks: np.ndarray
    motions: np.ndarray
    ious: np.ndarray
    moving_union: Optional[np.ndarray] = None

    @staticmethod
    def from_label_map(labels: np.ndarray, motions: np.ndarray, ious: np.ndarray,
                       config: Optional[PropagatorConfig] = None) -> "FrameProposals":
        """One frame of the official ``build_propagator_inputs``: mask j = ``labels == j+1`` for j < max label
        (absent labels give empty masks), scores from column j, union of the masks with motion > thres.

        Args:
            labels: (H, W) integer label map (0 = background).
            motions, ious: (K,) or (K, 1) per-label scores (column j ↔ label j+1), K >= max label.
        """
        config = config or PropagatorConfig()
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be an integer (H, W) map, got {labels.dtype} {labels.shape}")
        motions = np.asarray(motions, dtype=np.float32).reshape(-1)
        ious = np.asarray(ious, dtype=np.float32).reshape(-1)
        n = int(labels.max()) if labels.size else 0
        if motions.shape != ious.shape or motions.shape[0] < n:
            raise ValueError(f"need one motion and one iou per label up to {n}, got {motions.shape} and {ious.shape}")
        masks = labels[None] == (np.arange(n) + 1)[:, None, None]
        union = (masks & (motions[:n] > config.motion_thres)[:, None, None]).any(0)
        return FrameProposals(masks, motions[:n], ious[:n], union)

    @staticmethod
    def empty(height: int, width: int) -> "FrameProposals":
        return FrameProposals(np.zeros((0, height, width), bool), np.zeros(0, np.float32), np.zeros(0, np.float32))


@dataclass
class OnlineFrameOutput:
    """Tracking result of one frame.

    Attributes:
        frame_index: the frame.
        track_ids: ids of the tracked objects (stable across frames, never reused), in creation order.
        masks: (n, H, W) bool, mutually exclusive (per-pixel arg-max over the objects' logits).
        moving: (n,) bool — the object moves on this frame.
        motion_scores: (n,) motion probability of the proposal that best contains the object (0 if none).
        object_ious: (n,) SAM 2's predicted IoU of each object's mask (1.0 on prompted frames).
        new_track_ids / reinforced_track_ids: tracks created / re-prompted (Case 1) on this frame.
        removed_track_ids: tracks dropped after this frame (absent for ``max_absent_frames`` frames).
        logits: (n, H, W) float32 per-object mask logits before the arg-max (only with ``keep_logits``).
    """

    frame_index: int
    track_ids: List[int]
    masks: np.ndarray
    moving: np.ndarray
    motion_scores: np.ndarray
    object_ious: np.ndarray
    new_track_ids: List[int] = field(default_factory=list)
    reinforced_track_ids: List[int] = field(default_factory=list)
    logits: Optional[np.ndarray] = None
    removed_track_ids: List[int] = field(default_factory=list)

    def label_map(self, moving_only: bool = True) -> np.ndarray:
        """(H, W) uint16 map of track_id + 1 (0 = background); by default only moving objects (MOS-I)."""
        out = np.zeros(self.masks.shape[1:], dtype=np.uint16)
        if self.track_ids and max(self.track_ids) + 1 > np.iinfo(np.uint16).max:
            raise OverflowError(f"track id {max(self.track_ids)} does not fit a uint16 label map "
                                "(reset() the propagator to restart the ids)")
        for i, tid in enumerate(self.track_ids):
            if moving_only and not self.moving[i]:
                continue
            out[self.masks[i]] = tid + 1
        return out


class OnlinePropagator:
    """Streaming SAM 2 tracker of GMOS proposals; call :meth:`step` once per frame, in order.

    Args:
        predictor: SAM 2 video predictor (shared with the engine; converted with ``as_gmos_predictor``).
        config: thresholds (official) and the streaming caps ``max_cond_frames_in_attn`` /
            ``max_kept_cond_frames``.
        video_hw: (H, W) of the proposals and outputs.
        keep_logits: also return each frame's per-object logits (memory: n·H·W floats per frame).
        prune: drop state SAM 2 can no longer attend to (default). False keeps everything — only to verify
            that pruning does not change results; memory then grows with the stream.
    """

    def __init__(self, predictor, config: Optional[PropagatorConfig] = None, video_hw: Tuple[int, int] = (0, 0),
                 keep_logits: bool = False, prune: bool = True):
        self.keep_logits = bool(keep_logits)
        self.prune = bool(prune)
        self.predictor = as_gmos_predictor(predictor)
        self.config = config or PropagatorConfig()
        H, W = int(video_hw[0]), int(video_hw[1])
        if H <= 0 or W <= 0:
            raise ValueError(f"OnlinePropagator needs a positive video_hw (H, W), got {video_hw!r}")
        self.video_hw = (H, W)
        self.device = self.predictor.device
        if self.device.type != "cuda" or not self.config.cuda_bf16_autocast:
            install_fp32_memory_shim(self.predictor)
        p = self.predictor
        stride = max(1, int(getattr(p, "memory_temporal_stride_for_eval", 1)))
        # Oldest non-conditioning frame SAM 2 reads: spatial memory (num_maskmem - 1 frames at stride r,
        # +r for the rounding of the strided positions) and object pointers (max_obj_ptrs_in_encoder - 1).
        self._mem_window = (p.num_maskmem - 1) * stride + stride
        self._ptr_window = max(0, p.max_obj_ptrs_in_encoder - 1) if p.use_obj_ptrs_in_encoder else 0
        self.reset()

    # ---- public API ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every track and all memory (e.g. after a stream discontinuity)."""
        self.state = init_state_from_features(self.predictor, self.video_hw, None, num_frames=_UNBOUNDED_NUM_FRAMES)
        self._last_frame: Optional[int] = None
        self._next_track_id = 0
        self._prompt_frames: Dict[int, List[int]] = {}
        self._absent_frames: Dict[int, int] = {}

    @property
    def track_ids(self) -> List[int]:
        return list(self.state["obj_ids"])

    def retained_state_size(self) -> Dict[str, int]:
        """Counts of what the SAM 2 state holds (for memory-flatness checks)."""
        s = self.state
        return {
            "objects": len(s["obj_ids"]),
            "cached_features": len(s["cached_features"]),
            "cond_outputs": sum(len(d["cond_frame_outputs"]) for d in s["output_dict_per_obj"].values()),
            "non_cond_outputs": sum(len(d["non_cond_frame_outputs"]) for d in s["output_dict_per_obj"].values()),
            "non_cond_full_outputs": sum(
                1 for d in s["output_dict_per_obj"].values() for o in d["non_cond_frame_outputs"].values()
                if o.get("maskmem_features") is not None),
            "temp_outputs": sum(len(d["cond_frame_outputs"]) + len(d["non_cond_frame_outputs"])
                                for d in s["temp_output_dict_per_obj"].values()),
            "mask_inputs": sum(len(d) for d in s["mask_inputs_per_obj"].values()),
            "frames_tracked": sum(len(d) for d in s["frames_tracked_per_obj"].values()),
            "prompt_frames": sum(len(v) for v in self._prompt_frames.values()),
        }

    def step(self, frame_index: int, backbone_out: Mapping[str, List[torch.Tensor]],
             proposals: FrameProposals) -> OnlineFrameOutput:
        """Track one frame: ``backbone_out`` is SAM 2's ``forward_image`` output of the frame (batch 1)."""
        frame_index = int(frame_index)
        if self._last_frame is not None and frame_index != self._last_frame + 1:
            raise ValueError(f"OnlinePropagator.step expects consecutive frames: got {frame_index} after "
                             f"{self._last_frame} (call reset() after a discontinuity)")
        if frame_index < 0:
            raise ValueError(f"frame_index must be >= 0, got {frame_index}")
        masks, motions, ious, union = self._validate(proposals)
        t = frame_index
        self.state["cached_features"][t] = (self.state["images"], backbone_out)
        self._last_frame = t
        p = self.predictor
        saved_cap = p.max_cond_frames_in_attn
        with compute_context(self.device, self.config.cuda_bf16_autocast), self._quiet():
            p.max_cond_frames_in_attn = self.config.max_cond_frames_in_attn
            try:
                out = self._step(t, masks, motions, ious, union)
                if self.config.max_absent_frames > 0:
                    out.removed_track_ids = self._remove_lost_tracks(out)
            finally:
                p.max_cond_frames_in_attn = saved_cap
                if self.prune:
                    self._prune(t)
        return out

    # ---- internals -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _quiet(self):
        import warnings

        with warnings.catch_warnings():
            # sam2 without its compiled extension warns on every frame that hole filling is skipped.
            warnings.filterwarnings("ignore", message=r"(?s).*post-processing")
            yield

    def _validate(self, proposals: FrameProposals):
        H, W = self.video_hw
        masks = np.asarray(proposals.masks)
        if masks.ndim != 3 or masks.shape[1:] != (H, W):
            raise ValueError(f"proposal masks must be (N, {H}, {W}), got {masks.shape}")
        n = masks.shape[0]
        motions = np.asarray(proposals.motions, dtype=np.float32).reshape(-1)
        ious = np.asarray(proposals.ious, dtype=np.float32).reshape(-1)
        if motions.shape != (n,) or ious.shape != (n,):
            raise ValueError(f"proposal motions and ious must have one value per mask ({n}), got "
                             f"{motions.shape} and {ious.shape}")
        masks = masks.astype(bool)
        if proposals.moving_union is None:
            union = (masks & (motions > self.config.motion_thres)[:, None, None]).any(0) if n else np.zeros((H, W), bool)
        else:
            union = np.asarray(proposals.moving_union).astype(bool)
            if union.shape != (H, W):
                raise ValueError(f"moving_union must be ({H}, {W}), got {union.shape}")
        return masks, motions, ious, union

    def _confident_moving(self, motions: np.ndarray, ious: np.ndarray) -> np.ndarray:
        return (motions > self.config.motion_thres) & (ious > self.config.iou_thres)

    def _add_prompt(self, t: int, obj_id: int, mask) -> None:
        self.predictor.add_new_mask(self.state, frame_idx=t, obj_id=obj_id, mask=mask)
        self._prompt_frames.setdefault(obj_id, []).append(t)

    def _step(self, t: int, masks: np.ndarray, motions: np.ndarray, ious: np.ndarray,
              union: np.ndarray) -> OnlineFrameOutput:
        p, s, cfg, dev = self.predictor, self.state, self.config, self.device
        new_ids: List[int] = []
        reinforced: List[int] = []
        if not s["obj_ids"]:
            # Seeding: every confident moving proposal of the frame becomes a track (up to the cap).
            for j in np.flatnonzero(self._confident_moving(motions, ious)):
                if len(s["obj_ids"]) >= cfg.max_objects:
                    break
                if cfg.skip_empty_prompts and not masks[j].any():
                    continue
                self._add_prompt(t, self._next_track_id, masks[j])
                new_ids.append(self._next_track_id)
                self._next_track_id += 1
        else:
            logits = self._track_all(t)  # (n, 1, H, W) video-res logits from memory
            n_sam = logits.shape[0]
            n_pred = masks.shape[0]
            H, W = self.video_hw
            sam_masks = logits[:, 0].sigmoid()
            props = torch.as_tensor(masks, device=dev)
            mot = torch.as_tensor(motions, device=dev)
            iou = torch.as_tensor(ious, device=dev)
            if n_sam > n_pred:
                pad = n_sam - n_pred
                props = torch.cat([props, torch.zeros(pad, H, W, dtype=props.dtype, device=dev)], 0)
                mot = torch.cat([mot, torch.zeros(pad, device=dev)], 0)
                iou = torch.cat([iou, torch.zeros(pad, device=dev)], 0)
            matched, _, (m_mot, m_iou) = batch_hungarian_match(props[None], sam_masks[None], [mot[None], iou[None]])
            matched, m_mot, m_iou = matched[0], m_mot[0], m_iou[0]
            k = min(matched.shape[0], n_sam)
            match_iou = compute_iou(matched[:k], sam_masks[:k])
            obj_ids = list(s["obj_ids"])
            for j in range(matched.shape[0]):
                if not (m_mot[j] > cfg.motion_thres and m_iou[j] > cfg.iou_thres):
                    continue
                if cfg.skip_empty_prompts and not bool(matched[j].any()):
                    continue
                if j < k and match_iou[j] > cfg.match_iou_thres:  # Case 1: re-inforce track j
                    oid = obj_ids[j]
                    last = self._prompt_frames.get(oid, [])
                    if last and min(abs(t - f) for f in last) < cfg.min_prompt_frame_distance:
                        continue
                    self._add_prompt(t, oid, matched[j].bool())
                    reinforced.append(oid)
                    continue
                max_precision = compute_precision(matched[j:j + 1], sam_masks).max()
                if max_precision < cfg.min_precision_thres and len(s["obj_ids"]) < cfg.max_objects:
                    self._add_prompt(t, self._next_track_id, matched[j].bool())  # Case 2: new track
                    new_ids.append(self._next_track_id)
                    self._next_track_id += 1
        if not s["obj_ids"]:
            H, W = self.video_hw
            return OnlineFrameOutput(t, [], np.zeros((0, H, W), bool), np.zeros(0, bool), np.zeros(0),
                                     np.zeros(0), new_ids, reinforced,
                                     np.zeros((0, H, W), np.float32) if self.keep_logits else None)
        if new_ids or reinforced:
            # Memory-encode the prompts (the temporary outputs) exactly as propagate_in_video would.
            p.propagate_in_video_preflight(s)
        logits, obj_ious = self._frame_outputs(t)
        onehot = get_torch_hard_max(logits.transpose(0, 1)).transpose(0, 1)
        n_pred = masks.shape[0]
        motion_global, motion_per_obj = compute_motion_labels(
            onehot, torch.as_tensor(union, device=dev), torch.as_tensor(masks, device=dev),
            torch.as_tensor(motions, device=dev), n_pred, cfg.motion_precision_thres)
        return OnlineFrameOutput(
            frame_index=t,
            track_ids=list(s["obj_ids"]),
            masks=(onehot[:, 0] > 0).cpu().numpy(),
            moving=motion_global > cfg.motion_iou_thres,
            motion_scores=np.asarray(motion_per_obj, dtype=np.float64),
            object_ious=obj_ious.float().cpu().numpy().reshape(-1),
            new_track_ids=new_ids,
            reinforced_track_ids=reinforced,
            logits=logits[:, 0].float().cpu().numpy() if self.keep_logits else None,
        )

    def _remove_lost_tracks(self, out: OnlineFrameOutput) -> List[int]:
        """Count consecutive empty frames per track and drop tracks absent for ``max_absent_frames``."""
        removed = []
        for i, tid in enumerate(out.track_ids):
            self._absent_frames[tid] = 0 if out.masks[i].any() else self._absent_frames.get(tid, 0) + 1
            if self._absent_frames[tid] >= self.config.max_absent_frames:
                removed.append(tid)
        for tid in removed:
            # SAM 2 re-indexes the remaining objects (or resets the state when none is left).
            self.predictor.remove_object(self.state, tid, strict=True, need_output=False)
            self._absent_frames.pop(tid, None)
            self._prompt_frames.pop(tid, None)
        return removed

    def _track_all(self, t: int) -> torch.Tensor:
        """Track every object on frame t from memory (what one step of propagate_in_video does)."""
        p, s = self.predictor, self.state
        per_obj = []
        for obj_idx in range(p._get_obj_num(s)):
            obj_out = s["output_dict_per_obj"][obj_idx]
            current_out, pred_masks = p._run_single_frame_inference(
                inference_state=s, output_dict=obj_out, frame_idx=t, batch_size=1, is_init_cond_frame=False,
                point_inputs=None, mask_inputs=None, reverse=False, run_mem_encoder=True)
            obj_out["non_cond_frame_outputs"][t] = current_out
            s["frames_tracked_per_obj"][obj_idx][t] = {"reverse": False}
            per_obj.append(pred_masks)
        _, video_res = p._get_orig_video_res_output(s, torch.cat(per_obj, 0))
        return video_res

    def _frame_outputs(self, t: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every object's final output on frame t (after any prompt), at video resolution."""
        p, s = self.predictor, self.state
        masks, ious = [], []
        for obj_idx in range(p._get_obj_num(s)):
            d = s["output_dict_per_obj"][obj_idx]
            out = d["cond_frame_outputs"].get(t) or d["non_cond_frame_outputs"][t]
            masks.append(out["pred_masks"].to(self.device))
            ious.append(out["object_ious"].to(self.device, torch.float32))
        _, video_res = p._get_orig_video_res_output(s, torch.cat(masks, 0))
        return video_res, torch.cat(ious, 0)

    def _prune(self, t: int) -> None:
        """Drop everything SAM 2 can no longer attend to from frame t+1 on (bounded memory)."""
        s, cfg = self.state, self.config
        for f in [f for f in s["cached_features"] if f < t]:
            del s["cached_features"][f]
        oldest_mem = t + 1 - self._mem_window
        oldest_any = t + 1 - max(self._mem_window, self._ptr_window)
        for obj_idx, d in s["output_dict_per_obj"].items():
            non_cond = d["non_cond_frame_outputs"]
            for f in list(non_cond):
                if f < oldest_any:
                    del non_cond[f]
                elif f < oldest_mem and non_cond[f].get("maskmem_features") is not None:
                    # Only the object pointer of these frames is still read; drop the spatial memory.
                    out = non_cond[f]
                    non_cond[f] = {"obj_ptr": out["obj_ptr"], "object_score_logits": out["object_score_logits"],
                                   "maskmem_features": None, "maskmem_pos_enc": None, "pred_masks": None,
                                   "object_ious": out.get("object_ious")}
            cond = d["cond_frame_outputs"]
            if len(cond) > cfg.max_kept_cond_frames:
                for f in sorted(cond)[:len(cond) - cfg.max_kept_cond_frames]:
                    del cond[f]
            kept_inputs = set(cond)
            for store in (s["mask_inputs_per_obj"][obj_idx], s["point_inputs_per_obj"][obj_idx]):
                for f in [f for f in store if f not in kept_inputs]:
                    del store[f]
            tracked = s["frames_tracked_per_obj"][obj_idx]
            for f in [f for f in tracked if f < t]:
                del tracked[f]
        for oid, frames in self._prompt_frames.items():
            # Only prompts closer than min_prompt_frame_distance can still block a Case-1 re-inforcement.
            self._prompt_frames[oid] = [f for f in frames if t + 1 - f < cfg.min_prompt_frame_distance]
