"""sensor_msgs/Image and CompressedImage payloads to numpy, without cv_bridge.

Duck-typed on the message fields (``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``
for Image; ``format``, ``data`` for CompressedImage), so rclpy messages, rosbags messages and plain
objects all work. ``step`` padding (rows longer than ``width * bytes_per_pixel``) and ``is_bigendian`` for
multi-byte depth encodings are honoured.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

# Colour encodings accepted for the camera image, with their bytes per pixel.
IMAGE_ENCODINGS: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "yuv422": 2,  # ROS name of UYVY (U Y0 V Y1)
    "uyvy": 2,
    "yuv422_yuy2": 2,  # YUY2 / YUYV (Y0 U Y1 V)
    "yuyv": 2,
}
# Depth encodings accepted for the registered depth image: (numpy dtype, bytes per pixel).
DEPTH_ENCODINGS: dict[str, tuple[str, int]] = {
    "16UC1": ("u2", 2),  # millimetres
    "mono16": ("u2", 2),  # millimetres (what some drivers call 16UC1)
    "32FC1": ("f4", 4),  # metres
}


class UnsupportedEncodingError(ValueError):
    """The image encoding is not one GMOS can convert; the message names the accepted ones."""


class ImageFormatError(ValueError):
    """The image fields are inconsistent (size, step, data length)."""


def _buffer(data: Any) -> np.ndarray:
    """The message's ``data`` field as a flat uint8 array without copying where possible."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    # bytes, bytearray, array.array('B'), memoryview, or a list of ints (rclpy may hand any of these)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _rows(msg: Any, bytes_per_pixel: int, what: str) -> np.ndarray:
    """(height, width * bytes_per_pixel) uint8 view of the pixel rows, padding bytes dropped."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"{what}: empty image {width}x{height}; expected width and height > 0")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"{what}: step {step} is smaller than width*bytes_per_pixel = {width}*{bytes_per_pixel} = "
            f"{row_bytes} for encoding {msg.encoding!r}"
        )
    buf = _buffer(msg.data)
    if buf.size < step * height:
        raise ImageFormatError(
            f"{what}: data has {buf.size} bytes, expected at least step*height = {step}*{height} = {step * height}"
        )
    return buf[: step * height].reshape(height, step)[:, :row_bytes]


def _yuv422_to_rgb(rows: np.ndarray, width: int, layout: str) -> np.ndarray:
    """YUV 4:2:2 (BT.601, limited range, as OpenCV's COLOR_YUV2RGB_UYVY/YUY2) to RGB uint8."""
    if width % 2:
        raise ImageFormatError(f"yuv422 image: width {width} is odd; 4:2:2 needs an even width")
    quads = rows.reshape(rows.shape[0], width // 2, 4).astype(np.float32)
    if layout == "uyvy":
        u, y0, v, y1 = (quads[..., i] for i in range(4))
    else:  # yuy2
        y0, u, y1, v = (quads[..., i] for i in range(4))
    y = np.stack([y0, y1], axis=-1).reshape(rows.shape[0], width)
    u = np.repeat(u, 2, axis=1) - 128.0
    v = np.repeat(v, 2, axis=1) - 128.0
    y = (y - 16.0) * 1.164
    rgb = np.stack([y + 1.596 * v, y - 0.391 * u - 0.813 * v, y + 2.018 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image to an (H, W, 3) uint8 RGB array (a new, contiguous array).

    Accepts the encodings in ``IMAGE_ENCODINGS``; raises ``UnsupportedEncodingError`` for any other and
    ``ImageFormatError`` when the size, step and data length disagree.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in IMAGE_ENCODINGS:
        raise UnsupportedEncodingError(
            f"image encoding {msg.encoding!r} is not supported; expected one of {sorted(IMAGE_ENCODINGS)}"
        )
    width = int(msg.width)
    rows = _rows(msg, IMAGE_ENCODINGS[encoding], "image")
    height = rows.shape[0]
    if encoding == "mono8":
        return np.repeat(rows.reshape(height, width, 1), 3, axis=2)  # np.repeat copies
    if encoding in ("yuv422", "uyvy"):
        return _yuv422_to_rgb(rows, width, "uyvy")
    if encoding in ("yuv422_yuy2", "yuyv"):
        return _yuv422_to_rgb(rows, width, "yuy2")
    pixels = rows.reshape(height, width, IMAGE_ENCODINGS[encoding])
    if encoding.startswith("bgr"):
        return np.array(pixels[..., 2::-1], order="C")  # always a copy: the message buffer may be read-only
    return np.array(pixels[..., :3], order="C")


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg/png; ``format`` as image_transport writes it) to RGB."""
    from PIL import Image as PILImage, UnidentifiedImageError

    fmt = str(getattr(msg, "format", ""))
    if "compressedDepth" in fmt:
        raise UnsupportedEncodingError(
            f"CompressedImage format {fmt!r} is a compressed depth image; expected a jpeg or png colour image"
        )
    try:
        with PILImage.open(io.BytesIO(_buffer(msg.data).tobytes())) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ImageFormatError(
            f"CompressedImage (format {fmt!r}) could not be decoded: {err}; expected jpeg or png data"
        ) from err


def depth_array(msg: Any) -> np.ndarray:
    """The depth image in its own units and native-endian dtype (uint16 mm or float32 m), (H, W)."""
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise UnsupportedEncodingError(
            f"depth encoding {encoding!r} is not supported; expected one of {sorted(DEPTH_ENCODINGS)}"
        )
    kind, size = DEPTH_ENCODINGS[encoding]
    rows = _rows(msg, size, "depth image")
    order = ">" if int(msg.is_bigendian) else "<"
    values = np.ascontiguousarray(rows).view(order + kind).reshape(rows.shape[0], int(msg.width))
    return values.astype(kind)  # native byte order


def depth_to_float(msg: Any) -> np.ndarray:
    """Depth in metres as float32 (H, W); 16-bit encodings are millimetres, 0 and NaN mean no depth."""
    values = depth_array(msg)
    if values.dtype == np.uint16:
        return values.astype(np.float32) * np.float32(0.001)
    return values.astype(np.float32)


def is_supported_image_encoding(encoding: str) -> bool:
    return str(encoding).lower() in IMAGE_ENCODINGS


def nearest_resize(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array (e.g. the dynamic mask onto a depth image of another size)."""
    if mask.shape == (height, width):
        return mask
    rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
    cols = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]
