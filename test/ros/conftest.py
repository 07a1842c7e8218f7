"""Fixtures of the ROS tests: message builders (rosbags classes), the real tiny engine, the rclpy double."""
from __future__ import annotations

import numpy as np
import pytest

from gmos_core.bridge import NodeParams, RosbagsMessageFactory

# Small frames and a small Pi3 budget keep the real tiny engine at well under a second per frame.
HEIGHT, WIDTH = 42, 56
FPS = 8.0
PERIOD_NS = int(1e9 / FPS)


def tiny_params(**changes) -> NodeParams:
    base = dict(mode="gmos_s", device="cpu", precision="fp32", tiny_random_model=True, fps=FPS,
                pixel_limit=14 * 14 * 12, use_camera_info=False, publish_debug_image=True)
    base.update(changes)
    return NodeParams(**base)


@pytest.fixture(scope="session")
def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


@pytest.fixture(scope="session")
def bag_factory(typestore):
    return RosbagsMessageFactory(typestore)


@pytest.fixture(scope="session")
def tiny_engine_factory():
    """params → a real StreamingEngine on the tiny random models (models built once per mode)."""
    import torch

    from gmos_core.bridge.engine_factory import engine_config
    from gmos_core.engine.models import build_engine_models
    from gmos_core.engine.streaming import StreamingEngine

    torch.set_num_threads(2)
    models = {}

    def factory(params: NodeParams):
        config = engine_config(params)
        if params.mode not in models:
            models[params.mode] = build_engine_models(config, size="tiny", allow_random=True)
        return StreamingEngine(config, models[params.mode])

    return factory


def rgb_frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A frame with a bright square that moves to the right."""
    rng = np.random.default_rng(index)
    rgb = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    x = 4 + 3 * index
    rgb[10:24, x:x + 12] = (230, 40, 40)
    return rgb


def image_msg(factory, rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam", encoding: str = "rgb8",
              pad: int = 0):
    """sensor_msgs/Image of ``rgb`` in ``encoding`` with ``pad`` junk bytes at the end of each row."""
    from gmos_core.bridge.messages import IMAGE

    pixels = encode(rgb, encoding)
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1)
    if pad:
        rows = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    return factory.new(IMAGE, header=factory.header(stamp_ns, frame_id), height=height, width=rgb.shape[1],
                       encoding=encoding, is_bigendian=0, step=rows.shape[1],
                       data=factory.uint8_array(rows.reshape(-1)))


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return rgb[..., ::-1]
    if encoding == "rgba8":
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if encoding == "bgra8":
        return np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    if encoding == "mono8":
        return rgb[..., 0]
    raise ValueError(encoding)
