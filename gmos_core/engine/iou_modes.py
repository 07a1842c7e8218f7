"""gmos_online / gmos_offline with the IoU tracker (``EngineConfig.tracker`` = "iou", or "auto" with the shipped
default model): per-frame instance proposals → gmos_core.tracking.IouTracker → the same FrameResults as the
SAM 2 propagator path (labels = track_id + 1, objects with track id / state / motion probability / predicted
IoU, dynamic_mask = pixels of moving tracks).

Proposals come from the model's head: a proposer's top-k labelled masks (as the SAM 2 path uses them), or the
connected components of a GMOS-S foreground mask (prob > 0.5), each with its mean foreground probability as
motion probability.
"""
from __future__ import annotations

import time

import numpy as np

from gmos_core.engine.config import head_kind
from gmos_core.engine.modes import ModeHandler, OfflineFrameResult, _window_info, objects_from_labels
from gmos_core.engine.proposals import label_frame, top_k_proposals
from gmos_core.engine.refinement import head_probabilities, make_refinement
from gmos_core.engine.result import FrameResult, MotionState


def frame_proposals(head_out: dict, kind: str, top_k: int, video_hw, fg_probs=None) -> list:
    """Per-frame InstanceProposals of a batch of head outputs (``fg_probs``: the GMOS-S probabilities at the
    source size when a refinement stage has already computed them)."""
    from gmos_core.tracking import proposals_from_foreground, proposals_from_label_frame

    if kind == "gmos_s":
        probs = head_probabilities(head_out, video_hw) if fg_probs is None else fg_probs
        ious = head_out["iou_pred"].reshape(len(probs), -1)[:, 0].float().cpu().numpy()
        return [proposals_from_foreground(prob, 0.5, float(iou), max_instances=top_k)
                for prob, iou in zip(probs, ious)]
    out = []
    for prop in top_k_proposals(head_out, top_k, video_hw):
        labels, motions, ious = label_frame(prop, top_k)
        out.append(proposals_from_label_frame(labels, motions, ious))
    return out


class IouTrackedHandler(ModeHandler):
    """Causal tracking of per-frame proposals with the IoU tracker (gmos_online)."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        from gmos_core.tracking import IouTracker, IouTrackerConfig

        self.tracker = IouTracker(config.extra.get("tracker_config") or IouTrackerConfig())
        self.kind = head_kind(models)
        self.refinement = make_refinement(config, models) if self.kind == "gmos_s" else None

    def _track(self, jobs, head_out, video_hw):
        """[(job, TrackerFrameOutput, timings)] for the batch, in order."""
        fg_probs, stage_ms = None, {}
        if self.refinement is not None:
            fg_probs, stage_ms = self.refinement.refine(jobs, head_probabilities(head_out, video_hw), video_hw)
        t0 = time.perf_counter()
        proposals = frame_proposals(head_out, self.kind, self.config.top_k, video_hw, fg_probs)
        per_frame_ms = 1000.0 * (time.perf_counter() - t0) / len(jobs)
        out = []
        for job, prop in zip(jobs, proposals):
            t1 = time.perf_counter()
            tracked = self.tracker.step(prop)
            timings = {**job.timings_ms, **stage_ms}
            timings["propagator"] = 1000.0 * (time.perf_counter() - t1)
            timings["postprocess"] = per_frame_ms
            out.append((job, tracked, timings))
        return out

    def process(self, jobs, head_out, backbone_outs, video_hw):
        out = []
        for job, tracked, timings in self._track(jobs, head_out, video_hw):
            t1 = time.perf_counter()
            objects = objects_from_labels(tracked.labels, tracked.info)
            stamps, indices = _window_info(job)
            timings["postprocess"] += 1000.0 * (time.perf_counter() - t1)
            timings["total"] = sum(v for k, v in timings.items() if k != "total")
            out.append((job.frame.identity.index, FrameResult(
                frame=job.frame.identity, mode=self.config.mode, labels=tracked.labels, objects=objects,
                dynamic_mask=tracked.moving, window_stamps_ns=stamps, window_indices=indices, timings_ms=timings)))
        return out

    def retained(self) -> dict[str, int]:
        out = {f"tracker_{k}": v for k, v in self.tracker.retained_state_size().items()}
        if self.refinement is not None:
            out.update(self.refinement.retained())
        return out

    def close(self) -> None:
        self.tracker.reset()
        if self.refinement is not None:
            self.refinement.close()


class IouOfflineHandler(IouTrackedHandler):
    """gmos_offline with the IoU tracker (files only): tracks causally, and at the end of the stream decides, as
    the official stage 2 does, which objects are moving objects of the video (MOS): those moving on at least
    ``min_mov_object_frame_prop`` of the frames (official 0.03). ``labels_mos_i`` = objects moving on the frame."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        self.frames: list = []

    def process(self, jobs, head_out, backbone_outs, video_hw):
        for job, tracked, timings in self._track(jobs, head_out, video_hw):
            stamps, indices = _window_info(job)
            self.frames.append((job.frame.identity, tracked, stamps, indices, timings))
        return []

    def retained(self) -> dict[str, int]:
        return {"offline_frames": len(self.frames), **super().retained()}

    def finish(self):
        if not self.frames:
            return []
        from gmos_core.propagator import PropagatorConfig

        frames, self.frames = self.frames, []
        prop_config = self.config.extra.get("propagator_config") or PropagatorConfig()
        moving_frames: dict[int, int] = {}
        for _, tracked, *_ in frames:
            for instance_id, info in tracked.info.items():
                if info["state"] == MotionState.MOVING:
                    moving_frames[instance_id] = moving_frames.get(instance_id, 0) + 1
        moving_objects = [i for i, n in moving_frames.items()
                          if n / len(frames) >= prop_config.min_mov_object_frame_prop]
        keep = np.zeros(65536, bool)
        keep[moving_objects] = True
        out = []
        for identity, tracked, stamps, indices, timings in frames:
            t1 = time.perf_counter()
            mos = np.where(keep[tracked.labels], tracked.labels, 0).astype(np.uint16)
            mos_i = np.where(tracked.moving, tracked.labels, 0).astype(np.uint16)
            info = {i: v for i, v in tracked.info.items() if keep[i] or (mos_i == i).any()}
            timings = dict(timings)
            timings["postprocess"] += 1000.0 * (time.perf_counter() - t1)
            timings["total"] = sum(v for k, v in timings.items() if k != "total")
            out.append((identity.index, OfflineFrameResult(
                frame=identity, mode="gmos_offline", labels=mos, objects=objects_from_labels(mos, info),
                dynamic_mask=mos_i > 0, window_stamps_ns=stamps, window_indices=indices, timings_ms=timings,
                labels_mos_i=mos_i)))
        return out
