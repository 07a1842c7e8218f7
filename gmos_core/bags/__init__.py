"""rosbag2 input/output without a ROS install (PyPI ``rosbags``): a typestore with the gmos_msgs types,
interruption-safe bag writing, tolerant bag reading, bag-from-video and the replay driver.

Heavy imports (rosbags, numpy) happen when a submodule is used, so ``import gmos_core.bags`` is cheap.
"""
from __future__ import annotations

__all__ = [
    "BagInputError", "BagRecoveryError", "BagWriteError", "BagWriter", "OpenedBag", "RecoveryReport",
    "InputMessageBuilder", "VideoBagOptions", "make_typestore", "open_bag", "recover_bag", "video_to_bag",
]

_LOCATIONS = {
    "BagInputError": "gmos_core.bags.reader",
    "OpenedBag": "gmos_core.bags.reader",
    "open_bag": "gmos_core.bags.reader",
    "BagRecoveryError": "gmos_core.bags.recovery",
    "RecoveryReport": "gmos_core.bags.recovery",
    "recover_bag": "gmos_core.bags.recovery",
    "BagWriteError": "gmos_core.bags.writer",
    "BagWriter": "gmos_core.bags.writer",
    "InputMessageBuilder": "gmos_core.bags.messages",
    "VideoBagOptions": "gmos_core.bags.from_video",
    "video_to_bag": "gmos_core.bags.from_video",
    "make_typestore": "gmos_core.bags.typestore",
}


def __getattr__(name: str):
    if name in _LOCATIONS:
        import importlib

        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'gmos_core.bags' has no attribute {name!r}")
