"""Mode-specific post-processing behind the StreamingEngine: GMOS-S, GMOS online (causal), GMOS offline.

Each handler turns a processed batch (window jobs + head outputs + per-frame SAM 2 features) into
FrameResults (online modes) or keeps what the end of the stream needs (offline), and ``finish()`` is called
by ``flush()``.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from gmos_core.engine.proposals import FrameProposals, label_frame, label_video, top_k_proposals
from gmos_core.engine.result import FrameIdentity, FrameResult, MotionState, ObjectResult


def objects_from_labels(labels: np.ndarray, info: dict[int, dict]) -> list[ObjectResult]:
    """ObjectResults for every non-zero label present in ``labels`` (bbox and pixel count measured here).

    info: {instance_id: {"track_id", "state", "motion_prob", "predicted_iou"}}; labels without info get
    track_id = instance_id − 1 and UNKNOWN state.
    """
    from scipy import ndimage

    counts = np.bincount(labels.reshape(-1).astype(np.int64))
    boxes = ndimage.find_objects(labels.astype(np.int32))
    objects = []
    for instance_id in range(1, len(counts)):
        if counts[instance_id] == 0 or boxes[instance_id - 1] is None:
            continue
        ys, xs = boxes[instance_id - 1]
        extra = info.get(instance_id, {})
        objects.append(ObjectResult(
            instance_id=instance_id,
            track_id=int(extra.get("track_id", instance_id - 1)),
            state=MotionState(extra.get("state", MotionState.UNKNOWN)),
            motion_prob=float(extra.get("motion_prob", 0.0)),
            predicted_iou=float(extra.get("predicted_iou", 0.0)),
            bbox_xywh=(int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start)),
            pixel_count=int(counts[instance_id]),
        ))
    return objects


def _window_info(job) -> tuple[list[int], list[int]]:
    return [m.identity.stamp_ns for m in job.members], [m.identity.index for m in job.members]


class ModeHandler(ABC):
    """One per stream: turns processed batches into FrameResults; ``finish()`` runs at end of stream."""

    def __init__(self, config, models) -> None:
        self.config = config
        self.models = models

    @abstractmethod
    def process(self, jobs, head_out: dict, backbone_outs: Sequence[dict], video_hw) -> list[tuple[int, FrameResult]]:
        """(frame index, FrameResult) for the jobs' frames that are decided now (offline: none until finish)."""

    def finish(self) -> list[tuple[int, FrameResult]]:
        return []

    def retained(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class GmosSHandler(ModeHandler):
    """GMOS-S: prob = sigmoid(bilinear upsample of fg_mask to the source size), refined when the model has a
    refinement stage (gmos_core.engine.refinement); mask = prob > 0.5."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        from gmos_core.engine.refinement import make_refinement

        self.refinement = make_refinement(config, models)

    def process(self, jobs, head_out, backbone_outs, video_hw):
        from gmos_core.engine.refinement import head_probabilities

        t0 = time.perf_counter()
        probs = head_probabilities(head_out, video_hw)
        stage_ms = {}
        if self.refinement is not None:
            refine_start = time.perf_counter()
            probs, stage_ms = self.refinement.refine(jobs, probs, video_hw)
            t0 += time.perf_counter() - refine_start  # counted in its own stages, not in postprocess
        iou_pred = head_out["iou_pred"].reshape(len(jobs), -1)[:, 0].float().cpu().numpy()
        out = []
        per_frame_ms = 1000.0 * (time.perf_counter() - t0) / len(jobs)
        for job, prob, iou in zip(jobs, probs, iou_pred):
            t1 = time.perf_counter()
            mask = prob > 0.5
            labels = mask.astype(np.uint16)
            info = {1: {"track_id": 0, "state": MotionState.MOVING,
                        "motion_prob": float(prob[mask].mean()) if mask.any() else 0.0,
                        "predicted_iou": float(iou)}}
            stamps, indices = _window_info(job)
            timings = {**job.timings_ms, **stage_ms}
            timings["propagator"] = 0.0
            timings["postprocess"] = per_frame_ms + 1000.0 * (time.perf_counter() - t1)
            timings["total"] = sum(timings.values())
            out.append((job.frame.identity.index, FrameResult(
                frame=job.frame.identity, mode="gmos_s", labels=labels, objects=objects_from_labels(labels, info),
                dynamic_mask=mask, fg_prob=prob.astype(np.float32), window_stamps_ns=stamps,
                window_indices=indices, timings_ms=timings)))
        return out

    def retained(self) -> dict[str, int]:
        return self.refinement.retained() if self.refinement is not None else {}

    def close(self) -> None:
        if self.refinement is not None:
            self.refinement.close()


@dataclass
class OfflineFrameResult(FrameResult):
    """Offline GMOS result of one frame: ``labels`` = MOS (stage-2 tracks without static objects),
    ``dynamic_mask`` = MOS-I pixels, and ``labels_mos_i`` the MOS-I label image (same object ids)."""

    labels_mos_i: Optional[np.ndarray] = None


class OfflineHandler(ModeHandler):
    """Files only. Keeps each segmented frame's top-K slot map + scores and its SAM 2 features; at the end
    of the stream runs the official whole-video labelling (§7.4) and two-stage propagation (§8.4–8.5)."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        self.frames: list[tuple[FrameIdentity, FrameProposals, dict, list[int], list[int], dict]] = []
        self.last_two_stage = None  # TwoStageResult of the last finished stream (for writers / debugging)
        self.last_labels = None

    def process(self, jobs, head_out, backbone_outs, video_hw):
        t0 = time.perf_counter()
        proposals = top_k_proposals(head_out, self.config.top_k, video_hw)
        per_frame_ms = 1000.0 * (time.perf_counter() - t0) / len(jobs)
        for job, prop, backbone in zip(jobs, proposals, backbone_outs):
            stamps, indices = _window_info(job)
            timings = dict(job.timings_ms)
            timings["postprocess"] = per_frame_ms
            self.frames.append((job.frame.identity, prop, backbone, stamps, indices, timings))
        return []

    def retained(self) -> dict[str, int]:
        return {"offline_frames": len(self.frames)}

    def finish(self):
        if not self.frames:
            return []
        from gmos_core.propagator import PropagatorConfig, run_two_stage

        identities, proposals, backbones, stamps, indices, timings = zip(*self.frames)
        self.frames = []
        height, width = proposals[0].slot_map.shape
        t0 = time.perf_counter()
        seq_annos, pred_motions, pred_ious = label_video(list(proposals), self.config.top_k)
        label_ms = 1000.0 * (time.perf_counter() - t0) / len(identities)
        t0 = time.perf_counter()
        prop_config = self.config.extra.get("propagator_config") or PropagatorConfig()
        result = run_two_stage(self.models.predictor, list(backbones), seq_annos, pred_motions, pred_ious,
                               (height, width), prop_config, progress=self.config.extra.get("progress", False))
        prop_ms = 1000.0 * (time.perf_counter() - t0) / len(identities)
        self.last_two_stage = result
        self.last_labels = (seq_annos, pred_motions, pred_ious)
        del backbones
        out = []
        stage1, stage2 = result.stage1, result.stage2
        for t, identity in enumerate(identities):
            t1 = time.perf_counter()
            mos = result.mos[t].astype(np.uint16)
            mos_i = result.mos_i[t].astype(np.uint16)
            info = {}
            for instance_id in np.unique(np.concatenate([np.unique(mos), np.unique(mos_i)])):
                if instance_id == 0:
                    continue
                obj = int(instance_id) - 1
                moving = bool((mos_i == instance_id).any())
                info[int(instance_id)] = {
                    "track_id": obj,
                    "state": MotionState.MOVING if moving else MotionState.STATIC,
                    "motion_prob": float(stage2.motions[t, obj]) if stage2 is not None else float(moving),
                    "predicted_iou": float(stage1.object_ious[t, obj]) if stage1 is not None else 0.0,
                }
            frame_timings = dict(timings[t])
            frame_timings["propagator"] = prop_ms
            frame_timings["postprocess"] = frame_timings.get("postprocess", 0.0) + label_ms + 1000.0 * (
                time.perf_counter() - t1)
            frame_timings["total"] = sum(v for k, v in frame_timings.items() if k != "total")
            out.append((identity.index, OfflineFrameResult(
                frame=identity, mode="gmos_offline", labels=mos, objects=objects_from_labels(mos, info),
                dynamic_mask=mos_i > 0, window_stamps_ns=stamps[t], window_indices=indices[t],
                timings_ms=frame_timings, labels_mos_i=mos_i)))
        return out


class OnlineHandler(ModeHandler):
    """Causal GMOS (MOS-I on a stream): per-frame labelled proposals → OnlinePropagator.step."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        self.propagator = None
        self.adapter = None

    def _ensure_propagator(self, video_hw):
        if self.propagator is None:
            from gmos_core.engine.online_adapter import make_online_propagator

            self.propagator, self.adapter = make_online_propagator(self.models, self.config, video_hw)
        return self.propagator

    def process(self, jobs, head_out, backbone_outs, video_hw):
        t0 = time.perf_counter()
        proposals = top_k_proposals(head_out, self.config.top_k, video_hw)
        per_frame_ms = 1000.0 * (time.perf_counter() - t0) / len(jobs)
        self._ensure_propagator(video_hw)
        out = []
        for job, prop, backbone in zip(jobs, proposals, backbone_outs):
            t1 = time.perf_counter()
            labels, motions, ious = label_frame(prop, self.config.top_k)
            label_ms = 1000.0 * (time.perf_counter() - t1)
            t1 = time.perf_counter()
            step = self.adapter.step(self.propagator, job.frame.identity.index, backbone, labels, motions, ious)
            prop_ms = 1000.0 * (time.perf_counter() - t1)
            t1 = time.perf_counter()
            label_image, info, moving = step
            stamps, indices = _window_info(job)
            timings = dict(job.timings_ms)
            timings["propagator"] = prop_ms
            timings["postprocess"] = per_frame_ms + label_ms
            objects = objects_from_labels(label_image, info)
            timings["postprocess"] += 1000.0 * (time.perf_counter() - t1)
            timings["total"] = sum(v for k, v in timings.items() if k != "total")
            out.append((job.frame.identity.index, FrameResult(
                frame=job.frame.identity, mode="gmos_online", labels=label_image, objects=objects,
                dynamic_mask=moving, window_stamps_ns=stamps, window_indices=indices, timings_ms=timings)))
        return out

    def retained(self) -> dict[str, int]:
        if self.propagator is None or self.adapter is None:
            return {}
        return self.adapter.retained(self.propagator)

    def close(self) -> None:
        self.propagator = None


def make_mode_handler(config, models) -> ModeHandler:
    if config.mode == "geometric":
        from gmos_core.geometric.engine import GeometricHandler

        return GeometricHandler(config, models)
    from gmos_core.engine.config import resolve_tracker

    if config.mode in ("gmos_online", "gmos_offline") and resolve_tracker(config, models) == "iou":
        from gmos_core.engine.iou_modes import IouOfflineHandler, IouTrackedHandler

        return (IouTrackedHandler if config.mode == "gmos_online" else IouOfflineHandler)(config, models)
    return {"gmos_s": GmosSHandler, "gmos_online": OnlineHandler, "gmos_offline": OfflineHandler}[config.mode](
        config, models)
