"""Validation during training: the model on whole held-out sequences, scored with ``gmos_core.metrics``.

Proposer: per annotated frame, a fixed 0.5 s window (the inference setting), the official top-20-by-motion
labelling (``gmos_core.postprocess``) at the annotation size, motion scores passed to MOS-I (channels with
score <= 0.5 are dropped, as the official ``___motion.npy``), scored with MOS-I (sequence- and frame-level
Hungarian matching).  This is the *proposer alone* -- no SAM 2 propagator -- so slot labels are not persistent
identities; the frame-level matching (flhm) is the fairer number for it.
GMOS-S: foreground J (IoU of prob > 0.5 with the union of the moving objects), mean over frames.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch


def _time_anno(seq, gt_frames) -> dict:
    if getattr(seq, "time_anno", None) is not None:
        return seq.time_anno
    scene = getattr(seq, "scene", None)
    if scene is not None:
        return scene.time_annotation()
    ids = sorted({int(i) for g in gt_frames for i in np.unique(g) if 0 < i < 255})
    return {str(i): [[0, len(gt_frames) - 1]] for i in ids}  # DAVIS folders: every object always moving


@torch.no_grad()
def predict_sequence(model, dataset, seq_index: int, device, batch_size: int = 4,
                     autocast: Optional[Callable] = None):
    """(gt label maps, predicted label maps, motion scores or None, time annotation) of one sequence."""
    from gmos_core.postprocess import gmos_s_probability, label_proposals, select_top_proposals
    from training.datasets import INFERENCE_WINDOW_SECONDS, collate, make_sample, window_frame_indices

    seq = dataset.sequences[seq_index]
    window = dataset.window
    model.eval()
    gt_frames, proposals, preds = [], [], []
    slots = list(range(len(seq.query_frames)))
    for start in range(0, len(slots), batch_size):
        samples = []
        for slot in slots[start:start + batch_size]:
            idx = window_frame_indices(seq.query_frames[slot], seq.num_frames, seq.fps, window.fixed_seconds or INFERENCE_WINDOW_SECONDS,
                                       window.window_size, window.anchor)
            frames, labels, moving = seq.window(idx, slot)
            gt_frames.append(labels)
            samples.append(make_sample(frames, labels, moving, dataset.geometry, window.anchor_position, seq.name))
        batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in collate(samples).items()}
        with (autocast() if autocast else torch.autocast("cpu", enabled=False)):
            out = model(batch)
        out = {k: v.float() for k, v in out.items()}
        hw = gt_frames[-1].shape
        if "mask" in out:
            proposals.extend(select_top_proposals(out, hw))
        else:
            prob = gmos_s_probability(out["fg_mask"], hw)
            preds.extend(list((prob > 0.5).astype(np.uint8)))
    anno = _time_anno(seq, gt_frames)
    if proposals:
        labels = label_proposals(proposals)
        return gt_frames, list(labels.seq_annos), labels.pred_motions, anno
    return gt_frames, preds, None, anno


@torch.no_grad()
def evaluate_sequences(model, dataset, device, max_sequences: int = 8, autocast: Optional[Callable] = None) -> dict:
    """Scores over the first ``max_sequences`` sequences of ``dataset`` (a training.datasets.WindowDataset with
    a fixed window length)."""
    from gmos_core.metrics.mos_i import aggregate_mos_i, evaluate_mos_i_arrays

    was_training = model.training
    results, fg_j = [], []
    n = min(len(dataset.sequences), max_sequences) if max_sequences else len(dataset.sequences)
    for s in range(n):
        gt, pred, motion, anno = predict_sequence(model, dataset, s, device, autocast=autocast)
        if motion is None:  # GMOS-S: foreground J against the union of the moving objects
            from training.datasets import moving_flags

            flags = moving_flags(anno, len(gt))
            for t, (g, p) in enumerate(zip(gt, pred)):
                moving_ids = [k for k, f in flags.items() if f[t]]
                target = np.isin(g, moving_ids)
                union = np.logical_or(target, p > 0).sum()
                fg_j.append(1.0 if union == 0 else float(np.logical_and(target, p > 0).sum() / union))
            continue
        if not anno:
            continue  # nothing moves: MOS-I drops such sequences (as the official script)
        results.append(evaluate_mos_i_arrays(gt, pred, anno, motion, frame_level=True, name=dataset.sequences[s].name))
    model.train(was_training)
    if fg_j:
        return {"fg_j": float(np.mean(fg_j)), "frames": len(fg_j)}
    if not results:
        return {"sequences": 0}
    slhm = aggregate_mos_i(r.slhm for r in results)
    flhm = aggregate_mos_i(r.flhm for r in results)
    return {"j_mov": float(slhm.j_mov), "fp_count": float(slhm.fp_count), "mtiou": float(slhm.mtiou),
            "j_mov_flhm": float(flhm.j_mov), "fp_count_flhm": float(flhm.fp_count), "mtiou_flhm": float(flhm.mtiou),
            "sequences": len(results)}
