"""The streaming engine: frames in (with timestamps and identities), per-frame results out.

One engine serves the ROS node (via gmos_core.bridge), rosbag replay and `gmos infer`.
"""
from gmos_core.engine.result import FrameIdentity, FrameResult, MotionState, ObjectResult

__all__ = ["FrameIdentity", "FrameResult", "MotionState", "ObjectResult"]
