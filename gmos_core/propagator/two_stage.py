"""The official two-stage offline propagator (gmos_reference.md §8.3–8.6).

Stage 1 ("online" in the paper's wording, but with look-ahead to pick its start frame) tracks the seeded
moving objects from frame 0 to T−1, injects prompts on the fly (Case 1 re-inforce, Case 2 new object) and
restarts SAM 2's generator after every injection; it yields ``mos-i``. Stage 2 re-prompts every object with
its most confident stage-1 masks, propagates forward and backward from an anchor frame and drops static
objects; it yields ``mos``.

Deviations from the official code are only where it would crash (see docs/propagator.md, "Quirks").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .config import PropagatorConfig
from .inputs import PropagatorInputs, build_propagator_inputs, qualifying_scores, select_start_frame
from .ops import (batch_hungarian_match, build_indexed_masks, compute_iou, compute_motion_labels,
                  compute_precision, form_result_array, get_torch_hard_max, get_torch_priority_hard_max,
                  smooth_motions)
from .predictor import (as_gmos_predictor, compute_context, init_state_from_features,
                        install_fp32_memory_shim)

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    """Per-frame per-object values of one stage (K = ``config.max_objects`` columns, column = object id).

    Attributes:
        full_indexed: (T, H, W) uint8 label map of the (exclusive) object masks, label = obj_id + 1.
        mov_indexed: (T, H, W) uint8 label map of the masks on frames where the object moves
            (``motions > motion_iou_thres``).
        present: (T, K) bool — the object has an entry on the frame.
        motions: (T, K) 0/1 — precision of the object's mask inside the moving-proposal union > thres.
        motions_alter: (T, K) motion of the best-containing proposal (unsmoothed; unused officially).
        motions_alter_smoothed: (T, K) ``smooth_motions`` of ``motions_alter`` (computed, unused officially).
        object_ious: (T, K) SAM 2's per-object predicted IoU (stage 1 only, else None).
    """

    full_indexed: np.ndarray
    mov_indexed: np.ndarray
    present: np.ndarray
    motions: np.ndarray
    motions_alter: np.ndarray
    motions_alter_smoothed: np.ndarray
    object_ious: Optional[np.ndarray] = None


@dataclass
class TwoStageResult:
    """Output of :func:`run_two_stage`.

    ``mos_i`` (stage-1 moving masks) and ``mos`` (stage-2 masks without static objects) are (T, H, W) uint8
    label maps (label = object id + 1, identical ids in both), exactly what the official code writes as
    ``mos-i_frame`` / ``mos_frame`` PNGs. When no proposal is confident and moving, both are all zero and
    the stage results are None.
    """

    mos_i: np.ndarray
    mos: np.ndarray
    stage1: Optional[StageResult] = None
    stage2: Optional[StageResult] = None
    stage2_before_static_filter: Optional[StageResult] = None
    stage1_start_frame: Optional[int] = None
    stage2_start_frame: Optional[int] = None
    stage2_prompts: List[Tuple[int, int]] = field(default_factory=list)
    static_objects: List[int] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


class _Recorder:
    """Collects the official ``video_results`` dicts {frame: {obj_id: value}} of one stage."""

    def __init__(self) -> None:
        self.full: Dict[int, Dict[int, np.ndarray]] = {}
        self.motions: Dict[int, Dict[int, float]] = {}
        self.motions_alter: Dict[int, Dict[int, float]] = {}
        self.object_ious: Dict[int, Dict[int, float]] = {}

    def store(self, t: int, obj_ids: Sequence[int], onehot: torch.Tensor, motion_global: np.ndarray,
              motion_per_obj: np.ndarray, object_ious: Optional[torch.Tensor] = None) -> None:
        masks = (onehot > 0.0).cpu().numpy()  # (n, 1, H, W) bool
        ids = list(obj_ids)
        self.full[t] = {o: masks[i, 0] for i, o in enumerate(ids)}
        self.motions[t] = {o: float(motion_global[i]) for i, o in enumerate(ids)}
        self.motions_alter[t] = {o: float(motion_per_obj[i]) for i, o in enumerate(ids)}
        if object_ious is not None:
            ious = object_ious.float().cpu().numpy().reshape(-1)
            self.object_ious[t] = {o: float(ious[i]) for i, o in enumerate(ids)}

    def finish(self, T: int, H: int, W: int, config: PropagatorConfig, smoothing: Sequence[float],
               with_ious: bool, drop: Sequence[int] = ()) -> StageResult:
        K = config.max_objects
        motions = form_result_array(self.motions, np.zeros((T, K)), T)
        alter = form_result_array(self.motions_alter, np.zeros((T, K)), T)
        present = np.zeros((T, K), dtype=bool)
        full = {t: {o: m for o, m in d.items() if o not in drop} for t, d in self.full.items()}
        for t, d in full.items():
            present[t, list(d)] = True
        mov = {t: {o: m * (motions[t, o] > config.motion_iou_thres) for o, m in d.items()} for t, d in full.items()}
        return StageResult(
            full_indexed=build_indexed_masks(full, T, H, W),
            mov_indexed=build_indexed_masks(mov, T, H, W),
            present=present,
            motions=motions,
            motions_alter=alter,
            motions_alter_smoothed=smooth_motions(alter, smoothing) if T else alter,
            object_ious=form_result_array(self.object_ious, np.zeros((T, K)), T) if with_ious else None,
        )


def _frame_motion_labels(onehot: torch.Tensor, inputs: PropagatorInputs, t: int, device: torch.device,
                         config: PropagatorConfig) -> Tuple[np.ndarray, np.ndarray]:
    pred_masks = torch.as_tensor(inputs.all_pred_masks[t], device=device)
    n_pred = pred_masks.shape[0]
    pred_motions = torch.as_tensor(inputs.all_motions[t, :n_pred], device=device)
    return compute_motion_labels(onehot, torch.as_tensor(inputs.all_pred_motion_masks[t], device=device),
                                 pred_masks, pred_motions, n_pred, config.motion_precision_thres)


def _seed(predictor, state, inputs: PropagatorInputs, start: int, config: PropagatorConfig,
          prompts: Dict[Tuple[int, int], object], notes: List[str]) -> int:
    """Official seeding at ``start``; returns the number of objects created."""
    masks = inputs.all_pred_masks[start]
    next_id = 0
    for j in range(masks.shape[0]):
        if not (inputs.all_motions[start, j] > config.motion_thres and inputs.all_ious[start, j] > config.iou_thres):
            continue
        if config.skip_empty_prompts and not masks[j].any():
            continue
        if next_id >= config.max_objects:
            # Official: no cap here → index error in the K-wide result arrays. We stop at the cap.
            notes.append(f"seeding capped at max_objects={config.max_objects} on frame {start}")
            log.warning(notes[-1])
            break
        predictor.add_new_mask(state, frame_idx=start, obj_id=next_id, mask=masks[j], with_object_ious=True)
        prompts[(start, next_id)] = masks[j]
        next_id += 1
    return next_id


def _seedable_scores(inputs: PropagatorInputs, config: PropagatorConfig) -> np.ndarray:
    """q restricted to labels that exist as masks on their frame (and are non-empty if so configured)."""
    q = qualifying_scores(inputs.all_ious, inputs.all_motions, config).copy()
    for t, m in enumerate(inputs.all_pred_masks):
        q[t, m.shape[0]:] = 0
        if config.skip_empty_prompts:
            empty = ~m.reshape(m.shape[0], -1).any(-1)
            q[t, :m.shape[0]][empty] = 0
    return q


def _run_stage1(predictor, state, inputs: PropagatorInputs, start: int, config: PropagatorConfig,
                device: torch.device, progress: bool, notes: List[str]) -> Tuple[_Recorder, int]:
    from tqdm import tqdm

    T = inputs.num_frames
    prompts: Dict[Tuple[int, int], object] = {}
    next_id = _seed(predictor, state, inputs, start, config, prompts, notes)
    generator = predictor.propagate_in_video(state, start_frame_idx=0, reverse=False, with_object_ious=True)
    rec = _Recorder()
    for t in tqdm(range(T), desc="propagator stage 1", disable=not progress):
        _, obj_ids, logits, obj_ious = next(generator)
        update = False
        pred_masks_np = inputs.all_pred_masks[t]
        n_pred, h, w = pred_masks_np.shape
        n_sam = logits.shape[0]
        motions = torch.as_tensor(inputs.all_motions[t, :n_pred], device=device)
        ious = torch.as_tensor(inputs.all_ious[t, :n_pred], device=device)
        sam_masks = logits[:, 0].sigmoid()
        proposals = torch.as_tensor(pred_masks_np, device=device)
        if n_sam > n_pred:  # zero-pad the proposals to the number of SAM objects
            pad = n_sam - n_pred
            proposals = torch.cat([proposals, torch.zeros(pad, h, w, device=device)], 0)
            motions = torch.cat([motions, torch.zeros(pad, device=device)], 0)
            ious = torch.cat([ious, torch.zeros(pad, device=device)], 0)
        matched, _, (m_motions, m_ious) = batch_hungarian_match(
            proposals[None], sam_masks[None], [motions[None], ious[None]])
        matched, m_motions, m_ious = matched[0], m_motions[0], m_ious[0]
        k = min(matched.shape[0], n_sam)
        match_iou = compute_iou(matched[:k], sam_masks[:k])

        for j in range(matched.shape[0]):
            if not (m_motions[j] > config.motion_thres and m_ious[j] > config.iou_thres):
                continue
            if config.skip_empty_prompts and not bool(matched[j].any()):
                continue
            # Case 1: the proposal re-finds object j almost exactly → re-inforce it (unless prompted recently).
            if j < match_iou.shape[0] and match_iou[j] > config.match_iou_thres:
                own = [f for (f, o) in prompts if o == j]
                if own and min(abs(t - f) for f in own) < config.min_prompt_frame_distance:
                    continue
                _, obj_ids, logits, obj_ious = predictor.add_new_mask(
                    state, frame_idx=t, obj_id=j, mask=matched[j], with_object_ious=True)
                prompts[(t, j)] = matched[j]
                update = True
                continue
            # Case 2: the proposal is (mostly) not covered by any tracked object → a new object.
            max_precision = compute_precision(matched[j:j + 1], sam_masks).max()
            if max_precision < config.min_precision_thres and next_id < config.max_objects:
                _, obj_ids, logits, obj_ious = predictor.add_new_mask(
                    state, frame_idx=t, obj_id=next_id, mask=matched[j], with_object_ious=True)
                prompts[(t, next_id)] = matched[j]
                next_id += 1
                update = True

        if update and t + 1 != T:
            # SAM 2 consolidates the new prompts into memory when a generator starts.
            generator.close()
            generator = predictor.propagate_in_video(state, start_frame_idx=t + 1, reverse=False,
                                                     with_object_ious=True)
        onehot = get_torch_hard_max(logits.transpose(0, 1)).transpose(0, 1)
        motion_global, motion_per_obj = _frame_motion_labels(onehot, inputs, t, device, config)
        rec.store(t, obj_ids, onehot, motion_global, motion_per_obj, obj_ious)
    generator.close()
    return rec, next_id


def _select_stage2_prompts(object_ious: np.ndarray, full_indexed: np.ndarray,
                           config: PropagatorConfig) -> Dict[Tuple[int, int], np.ndarray]:
    prompts: Dict[Tuple[int, int], np.ndarray] = {}
    for o in range(object_ious.shape[1]):
        n = int(np.ceil((object_ious[:, o] > 0).sum() * config.stage2_prompt_fraction))
        if n == 0:
            continue
        # The official call, kept verbatim: which of equal-IoU frames wins depends on argpartition.
        for t in np.argpartition(object_ious[:, o], -n)[-n:]:
            if object_ious[t, o] < config.stage2_prompt_iou_thres:
                continue
            prompts[(int(t), o)] = full_indexed[t] == (o + 1)
    return prompts


def _run_stage2_pass(predictor, state, inputs: PropagatorInputs, start: int, reverse: bool,
                     prompt_counts: Mapping[int, int], rec: _Recorder, config: PropagatorConfig,
                     device: torch.device, progress: bool):
    from tqdm import tqdm

    frames = range(start, -1, -1) if reverse else range(start, inputs.num_frames)
    generator = predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse,
                                             with_object_ious=False)
    for t in tqdm(frames, desc=f"propagator stage 2 ({'backward' if reverse else 'forward'})",
                  disable=not progress):
        _, obj_ids, logits = next(generator)
        priority = [prompt_counts.get(o, 0) for o in obj_ids]
        onehot = get_torch_priority_hard_max(logits.transpose(0, 1), priority, 0.0).transpose(0, 1)
        motion_global, motion_per_obj = _frame_motion_labels(onehot, inputs, t, device, config)
        rec.store(t, obj_ids, onehot, motion_global, motion_per_obj)
    return generator


def run_two_stage(
    predictor,
    backbone_outs: Sequence[Mapping[str, List[torch.Tensor]]],
    seq_annos: np.ndarray,
    pred_motions: np.ndarray,
    pred_ious: np.ndarray,
    video_hw: Optional[Tuple[int, int]] = None,
    config: Optional[PropagatorConfig] = None,
    progress: bool = True,
) -> TwoStageResult:
    """Run the official two-stage propagator on one video.

    Args:
        predictor: a SAM 2 video predictor (stock ones are converted with :func:`as_gmos_predictor`).
        backbone_outs: per-frame raw ``forward_image`` outputs (the engine's single SAM 2 encode per frame).
        seq_annos: (T, H, W) uint8 proposer label map (0 = background, label j+1 ↔ score column j).
        pred_motions, pred_ious: (T, 20, 1) (or (T, 20)) per-label motion probability / predicted IoU.
        video_hw: (H, W) of the outputs; defaults to ``seq_annos.shape[1:]`` (they must agree).
        config: thresholds (official defaults).
        progress: show tqdm bars.
    """
    config = config or PropagatorConfig()
    seq_annos = np.asarray(seq_annos)
    if seq_annos.ndim != 3:
        raise ValueError(f"seq_annos must be (T, H, W), got shape {seq_annos.shape}")
    T, H, W = seq_annos.shape
    if video_hw is not None and tuple(video_hw) != (H, W):
        raise ValueError(f"video_hw {tuple(video_hw)} must equal the label map size {(H, W)}")
    if len(backbone_outs) != T:
        raise ValueError(f"need one backbone_out per frame: {len(backbone_outs)} given for {T} frames")
    inputs = build_propagator_inputs(seq_annos, pred_motions, pred_ious, config)
    empty = np.zeros((T, H, W), dtype=np.uint8)
    result = TwoStageResult(mos_i=empty, mos=empty.copy())
    if T == 0:
        return result

    start, _ = select_start_frame(inputs.all_ious, inputs.all_motions, config)
    if start is None:
        result.notes.append("no moving objects: no proposal is both moving and confident")
        return result

    predictor = as_gmos_predictor(predictor)
    device = predictor.device
    if device.type != "cuda" or not config.cuda_bf16_autocast:
        install_fp32_memory_shim(predictor)
    state = init_state_from_features(predictor, (H, W), list(backbone_outs))
    with compute_context(device, config.cuda_bf16_autocast):
        # Official crash: no qualifying label < N_start on the start frame → SAM 2 "No input points or
        # masks". We then fall back to the start rule on seedable labels only (same rule otherwise).
        seedable = _seedable_scores(inputs, config)
        if seedable[start].sum() == 0:
            q = seedable
            if q.sum() == 0:
                result.notes.append("no moving objects: qualifying labels are absent from their frames")
                return result
            first3 = q[0:3].sum(-1)
            fallback = int(np.argmax(first3)) if first3.sum() > 0 else int(np.where(q.sum(-1) > 0)[0][0])
            result.notes.append(f"start frame {start} has no seedable label; using frame {fallback}")
            log.warning(result.notes[-1])
            start = fallback
        result.stage1_start_frame = start

        rec1, _ = _run_stage1(predictor, state, inputs, start, config, device, progress, result.notes)
        stage1 = rec1.finish(T, H, W, config, config.stage1_smoothing_weights, with_ious=True)
        result.stage1 = stage1
        result.mos_i = stage1.mov_indexed
        predictor.reset_state(state)

        prompts = _select_stage2_prompts(stage1.object_ious, stage1.full_indexed, config)
        if not prompts:
            result.notes.append("stage 2: no stage-1 frame qualifies as a prompt; mos is empty")
            return result
        counts: Dict[int, int] = {}
        for (_, o) in prompts:
            counts[o] = counts.get(o, 0) + 1
        for (t, o), mask in prompts.items():
            predictor.add_new_mask(state, frame_idx=t, obj_id=o, mask=mask)
        result.stage2_prompts = list(prompts)
        start2 = int(stage1.object_ious.sum(-1).argmax())
        result.stage2_start_frame = start2

        rec2 = _Recorder()
        generator = _run_stage2_pass(predictor, state, inputs, start2, False, counts, rec2, config, device, progress)
        if start2 > 0:
            generator.close()
            generator = _run_stage2_pass(predictor, state, inputs, start2, True, counts, rec2, config, device,
                                         progress)
        generator.close()
        before = rec2.finish(T, H, W, config, config.stage2_smoothing_weights, with_ious=False)
        static = [int(o) for o in np.where(before.motions.mean(0) < config.min_mov_object_frame_prop)[0]]
        after = rec2.finish(T, H, W, config, config.stage2_smoothing_weights, with_ious=False, drop=static)
        result.stage2_before_static_filter = before
        result.stage2 = after
        result.static_objects = static
        result.mos = after.full_indexed
    return result
