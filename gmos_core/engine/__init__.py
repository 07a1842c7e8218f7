"""The streaming engine: frames in (with timestamps and identities), per-frame results out.

One engine serves the ROS node (via gmos_core.bridge), rosbag replay and `gmos infer`.
Heavy modules (torch, the models) load only when an engine is built.
"""
from gmos_core.engine.config import EngineConfig, EngineConfigError
from gmos_core.engine.result import FrameIdentity, FrameResult, MotionState, ObjectResult

__all__ = [
    "EngineConfig", "EngineConfigError", "EngineModels", "FrameIdentity", "FrameResult", "MotionState",
    "ObjectResult", "OfflineFrameResult", "StreamDiscontinuity", "StreamingEngine", "WeightPaths",
    "build_engine_models",
]

_LAZY = {
    "StreamingEngine": "gmos_core.engine.streaming",
    "StreamDiscontinuity": "gmos_core.engine.streaming",
    "EngineModels": "gmos_core.engine.models",
    "WeightPaths": "gmos_core.engine.models",
    "build_engine_models": "gmos_core.engine.models",
    "OfflineFrameResult": "gmos_core.engine.modes",
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
