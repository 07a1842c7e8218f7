"""Glue between the engine's per-frame labelled proposals and gmos_core.propagator.OnlinePropagator.

The propagator wants consecutive frame numbers; the engine may skip frames (segment=False), so the adapter
numbers the *segmented* frames 0, 1, 2, ... — SAM 2's memory then lives in segmented-frame time, which is
what it sees anyway.
"""
from __future__ import annotations

import numpy as np

from gmos_core.engine.result import MotionState


def make_online_propagator(models, config, video_hw):
    from gmos_core.propagator import OnlinePropagator, PropagatorConfig

    propagator = OnlinePropagator(models.predictor, config.extra.get("propagator_config") or PropagatorConfig(),
                                  tuple(video_hw))
    return propagator, OnlineAdapter()


class OnlineAdapter:
    def __init__(self) -> None:
        self.steps = 0

    def step(self, propagator, frame_index: int, backbone_out: dict, labels: np.ndarray, motions: np.ndarray,
             ious: np.ndarray):
        """Returns (label image uint16 of all tracks (track_id + 1), per-instance info, moving-pixel mask)."""
        from gmos_core.propagator import FrameProposals

        count = int(labels.max())
        masks = labels[None] == np.arange(1, count + 1, dtype=labels.dtype)[:, None, None]
        proposals = FrameProposals(masks, motions[:count].astype(np.float32), ious[:count].astype(np.float32))
        out = propagator.step(self.steps, backbone_out, proposals)
        self.steps += 1
        label_image = out.label_map(moving_only=False)
        info = {}
        for i, track_id in enumerate(out.track_ids):
            info[track_id + 1] = {
                "track_id": track_id,
                "state": MotionState.MOVING if bool(out.moving[i]) else MotionState.STATIC,
                "motion_prob": float(out.motion_scores[i]),
                "predicted_iou": float(out.object_ious[i]),
            }
        return label_image, info, out.label_map(moving_only=True) > 0

    def retained(self, propagator) -> dict[str, int]:
        return {f"propagator_{k}": int(v) for k, v in propagator.retained_state_size().items()}
