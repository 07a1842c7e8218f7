"""Trackers that turn per-frame instance proposals into tracks with a motion state (runtime logic, no
nn.Modules).

* :class:`IouTracker` (``tracker: iou``): mask-IoU + Hungarian association of per-frame proposals, track
  birth/death, per-object moving/static state with hysteresis. Needs no trained SAM 2 video memory, so it is
  what the shipped default model uses; the official weights keep the SAM 2 propagator (``tracker: sam2``).
* :func:`proposals_from_label_frame` / :func:`proposals_from_foreground`: the two proposal sources (proposer
  top-k labels, GMOS-S foreground connected components).
"""
from gmos_core.tracking.iou_tracker import (
    InstanceProposals,
    IouTracker,
    IouTrackerConfig,
    IouTrackerConfigError,
    TrackerFrameOutput,
    proposals_from_foreground,
    proposals_from_label_frame,
)

__all__ = [
    "InstanceProposals",
    "IouTracker",
    "IouTrackerConfig",
    "IouTrackerConfigError",
    "TrackerFrameOutput",
    "proposals_from_foreground",
    "proposals_from_label_frame",
]
