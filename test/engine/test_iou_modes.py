"""The IoU-tracked modes' wiring from head outputs to FrameResults, on crafted head outputs (no model): which
mask goes with which motion probability, who is born, what is moving."""
from __future__ import annotations

import math

import numpy as np
import torch

from gmos_core.engine import EngineConfig
from gmos_core.engine.iou_modes import IouTrackedHandler, frame_proposals
from gmos_core.engine.result import FrameIdentity, MotionState
from gmos_core.engine.streaming import BufferedFrame, WindowJob


class _Models:
    def __init__(self, head_kind):
        self.head_kind = head_kind
        self.default_tracker = "iou"


def _job(index):
    frame = BufferedFrame(FrameIdentity(index, index * 100), np.zeros((16, 16, 3), np.uint8), True)
    return WindowJob(frame, [frame] * 5, 2, {"head": 1.0})


def _proposer_output():
    """3 queries on an 8x8 grid: query 0 owns the top-left quadrant and moves (logit 2), query 1 the bottom-right
    and is static (logit -1), query 2 owns nothing (logit 0: ranks second by motion but has no pixels)."""
    mask = torch.full((1, 3, 8, 8), -5.0)
    mask[0, 0, :4, :4] = 5.0
    mask[0, 1, 4:, 4:] = 5.0
    return {"mask": mask, "motion_logits": torch.tensor([[[2.0], [-1.0], [0.0]]]),
            "iou_pred": torch.tensor([[[0.9], [0.6], [0.1]]])}


def test_proposer_proposals_keep_each_mask_with_its_own_scores():
    (props,) = frame_proposals(_proposer_output(), "proposer", 20, (16, 16))
    assert [int(m.sum()) for m in props.masks] == [64, 64]
    assert props.masks[0][:8, :8].all() and props.masks[1][8:, 8:].all()
    np.testing.assert_allclose(props.motions, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))], rtol=1e-6)
    np.testing.assert_allclose(props.ious, [0.9, 0.6], rtol=1e-6)


def test_online_handler_tracks_the_moving_proposal_only():
    handler = IouTrackedHandler(EngineConfig(mode="gmos_online", tracker="iou"), _Models("proposer"))
    for index in range(3):
        ((frame_index, result),) = handler.process([_job(index)], _proposer_output(), [None], (16, 16))
        assert frame_index == index and result.mode == "gmos_online"
        # the static query never starts a track; the moving one keeps track 0 (label 1) on every frame
        assert sorted(np.unique(result.labels)) == [0, 1] and result.labels[:8, :8].all()
        assert [(o.track_id, o.state, o.pixel_count, o.bbox_xywh) for o in result.objects] == [
            (0, MotionState.MOVING, 64, (0, 0, 8, 8))]
        np.testing.assert_array_equal(result.dynamic_mask, result.labels == 1)
        assert result.timings_ms["propagator"] >= 0 and result.window_indices == [index] * 5
    assert handler.retained() == {"tracker_tracks": 1, "tracker_mask_pixels": 64}


def test_gmos_s_foreground_components_become_tracks():
    fg = torch.full((1, 1, 8, 8), -4.0)
    fg[0, 0, 1:3, 1:3] = 4.0  # two separate blobs
    fg[0, 0, 5:7, 4:8] = 4.0
    handler = IouTrackedHandler(EngineConfig(mode="gmos_online", tracker="iou"), _Models("gmos_s"))
    ((_, result),) = handler.process([_job(0)], {"fg_mask": fg, "iou_pred": torch.tensor([[0.5]])}, [None], (16, 16))
    # bilinear upsampling blurs the blob edges; the larger blob is proposal 0 -> track 0 (label 1)
    assert [o.track_id for o in result.objects] == [0, 1]
    big, small = result.objects
    assert big.pixel_count > small.pixel_count > 0 and big.bbox_xywh[1] > small.bbox_xywh[1]
    assert all(o.state == MotionState.MOVING and o.motion_prob > 0.5 for o in result.objects)
