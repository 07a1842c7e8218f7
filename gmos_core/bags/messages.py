"""Building and taking apart rosbags messages: headers, images, camera infos.

These are the rosbags counterparts of what a camera driver publishes (``InputMessageBuilder``). The
node's outputs are built by ``gmos_core.bridge.messages`` through its ``RosbagsMessageFactory``.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

NS_PER_S = 1_000_000_000

# encodings bag-from-video can write: (channels, conversion from RGB)
WRITABLE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"timestamp {stamp_ns} ns is negative; ROS time stamps are >= 0")
    return stamp_ns // NS_PER_S, stamp_ns % NS_PER_S


def rgb_to_encoding(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 RGB -> (flat uint8 pixel buffer, step) in ``encoding``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full((height, width, 1), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        pixels = np.concatenate([rgb[..., ::-1], np.full((height, width, 1), 255, np.uint8)], axis=2)
    elif encoding == "mono8":
        # ITU-R BT.601 luma, as OpenCV's RGB2GRAY
        pixels = np.round(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
    else:
        raise ValueError(f"cannot write encoding {encoding!r}; expected one of {list(WRITABLE_ENCODINGS)}")
    pixels = np.ascontiguousarray(pixels)
    return pixels.reshape(-1), pixels.nbytes // height


class InputMessageBuilder:
    """Builds the *input* messages bag-from-video writes (images in several encodings, camera infos) as
    rosbags message objects. The node's *output* messages come from gmos_core.bridge's factories."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore
        self.types = typestore.types

    def new(self, msgtype: str, **fields: Any) -> Any:
        """A message of ``msgtype`` (e.g. ``sensor_msgs/msg/Image``); every field must be given."""
        try:
            cls = self.types[msgtype]
        except KeyError:
            raise ValueError(f"message type {msgtype} is not registered in the typestore") from None
        return cls(**fields)

    def time(self, stamp_ns: int) -> Any:
        sec, nanosec = ns_to_sec_nanosec(stamp_ns)
        return self.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        return self.types["std_msgs/msg/Header"](stamp=self.time(stamp_ns), frame_id=str(frame_id))

    def image(self, header: Any, pixels: np.ndarray, encoding: str, step: Optional[int] = None) -> Any:
        """sensor_msgs/Image from an (H, W[, C]) array whose bytes are already in ``encoding``."""
        pixels = np.ascontiguousarray(pixels)
        height, width = pixels.shape[:2]
        row_bytes = pixels.nbytes // height if height else 0
        return self.types["sensor_msgs/msg/Image"](
            header=header, height=int(height), width=int(width), encoding=encoding,
            is_bigendian=0, step=int(step if step is not None else row_bytes),
            data=pixels.reshape(-1).view(np.uint8),
        )

    def image_from_rgb(self, header: Any, rgb: np.ndarray, encoding: str = "rgb8") -> Any:
        data, step = rgb_to_encoding(rgb, encoding)
        height, width = rgb.shape[:2]
        return self.types["sensor_msgs/msg/Image"](
            header=header, height=int(height), width=int(width), encoding=encoding,
            is_bigendian=0, step=int(step), data=data,
        )

    def camera_info(self, header: Any, width: int, height: int, focal_px: Optional[float] = None) -> Any:
        """CameraInfo for an unrectified pinhole camera; intrinsics all zero (= uncalibrated, as the
        sensor_msgs/CameraInfo documentation defines) unless ``focal_px`` is given (principal point at the
        image centre)."""
        if focal_px is not None and not focal_px > 0:
            raise ValueError(f"focal length must be > 0 pixels, got {focal_px}")
        f = float(focal_px or 0.0)
        cx = (width - 1) / 2.0 if focal_px else 0.0
        cy = (height - 1) / 2.0 if focal_px else 0.0
        k = np.array([f, 0, cx, 0, f, cy, 0, 0, 1.0 if focal_px else 0.0], dtype=np.float64)
        r = np.eye(3, dtype=np.float64).reshape(-1) if focal_px else np.zeros(9)
        p = np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1.0 if focal_px else 0.0, 0], dtype=np.float64)
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.types["sensor_msgs/msg/CameraInfo"](
            header=header, height=int(height), width=int(width),
            distortion_model="plumb_bob" if focal_px else "", d=np.zeros(5 if focal_px else 0, np.float64),
            k=k, r=r, p=p, binning_x=0, binning_y=0, roi=roi,
        )
