"""Result types of the engine: one FrameResult per pushed frame, describing *that* frame.

These are plain data (numpy + builtins) so that the ROS node, rosbag replay, the CLI writers and the
metrics can consume them without torch.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


class MotionState(enum.IntEnum):
    """Per-object motion state on one frame (values match gmos_msgs/msg/MovingObject.msg)."""

    UNKNOWN = 0
    STATIC = 1
    MOVING = 2


@dataclass(frozen=True)
class FrameIdentity:
    """Who a frame is: carried from push() to the frame's result unchanged.

    index:    position in the stream since the last reset (0-based)
    stamp_ns: source timestamp in nanoseconds (e.g. header.stamp); drives window selection
    frame_id: coordinate frame / source name (ROS header.frame_id, or the sequence name)
    key:      opaque payload returned verbatim (the node stores the original ROS header here)
    """

    index: int
    stamp_ns: int
    frame_id: str = ""
    key: Any = None


@dataclass
class ObjectResult:
    """One object on one frame.

    instance_id:   its pixel value in FrameResult.labels (1..65535)
    track_id:      stable identity across frames (propagator track id; for proposals without a
                   propagator, the proposal slot)
    state:         MotionState on this frame
    motion_prob:   probability that it moves on this frame, in [0, 1]
    predicted_iou: the model's own mask-quality estimate (proposer iou_pred or SAM 2 object IoU)
    bbox_xywh:     (x_min, y_min, width, height) in pixels of the source image
    pixel_count:   number of pixels with this instance_id
    """

    instance_id: int
    track_id: int
    state: MotionState
    motion_prob: float
    predicted_iou: float
    bbox_xywh: tuple[int, int, int, int]
    pixel_count: int


@dataclass
class FrameResult:
    """Everything the engine says about one frame.

    labels:        (H, W) uint16 instance label image at source resolution, 0 = background
    dynamic_mask:  (H, W) bool, pixels of objects moving on this frame (GMOS-S: the fg mask)
    fg_prob:       (H, W) float32 foreground probability (GMOS-S only, else None)
    window_stamps_ns / window_indices: the frames the model looked at, in window order
    timings_ms:    per stage ("pi3_encoder", "pi3_decoder", "sam2_encoder", "head", "propagator", ...)
    skipped:       True when the frame was not segmented (skip_reason says why); labels are then zeros
    """

    frame: FrameIdentity
    mode: str
    labels: np.ndarray
    objects: list[ObjectResult] = field(default_factory=list)
    dynamic_mask: Optional[np.ndarray] = None
    fg_prob: Optional[np.ndarray] = None
    window_stamps_ns: list[int] = field(default_factory=list)
    window_indices: list[int] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    skip_reason: str = ""

    @property
    def moving_objects(self) -> list[ObjectResult]:
        return [o for o in self.objects if o.state == MotionState.MOVING]
