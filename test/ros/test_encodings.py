"""Image, compressed and depth conversions, for every supported encoding, with row padding."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from gmos_core.bridge import (ImageFormatError, UnsupportedEncodingError, compressed_to_rgb, depth_array,
                              depth_to_float, image_to_rgb)
from gmos_core.bridge.messages import IMAGE

from .conftest import image_msg, rgb_frame


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_round_trip_with_step_padding(bag_factory, encoding, pad):
    rgb = rgb_frame(3)
    msg = image_msg(bag_factory, rgb, 1, encoding=encoding, pad=pad)
    assert msg.step == rgb.shape[1] * len(encoding.rstrip("8")) + pad
    out = image_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert out.flags["WRITEABLE"] and not np.shares_memory(out, msg.data)  # a copy, never a view
    np.testing.assert_array_equal(out, rgb)


def test_mono8_is_replicated_to_three_channels(bag_factory):
    rgb = rgb_frame(1)
    out = image_to_rgb(image_msg(bag_factory, rgb, 1, encoding="mono8", pad=3))
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], rgb[..., 0])


def _yuv_message(factory, packed: np.ndarray, encoding: str, pad: int):
    height = packed.shape[0]
    rows = packed.reshape(height, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    return factory.new(IMAGE, header=factory.header(1, "cam"), height=height, width=packed.shape[1],
                       encoding=encoding, is_bigendian=0, step=rows.shape[1],
                       data=factory.uint8_array(rows.reshape(-1)))


@pytest.mark.parametrize("encoding,cv_code", [
    ("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
    ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2), ("yuyv", cv2.COLOR_YUV2RGB_YUY2),
])
def test_yuv422_matches_opencv(bag_factory, encoding, cv_code):
    rng = np.random.default_rng(0)
    packed = rng.integers(16, 236, size=(6, 8, 2), dtype=np.uint8)  # 8 pixels wide, 2 bytes per pixel
    expected = cv2.cvtColor(packed, cv_code)
    out = image_to_rgb(_yuv_message(bag_factory, packed, encoding, pad=4))
    assert out.shape == (6, 8, 3)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2  # OpenCV's fixed-point rounding


def test_yuv422_with_odd_width_is_refused(bag_factory):
    packed = np.zeros((2, 5, 2), np.uint8)
    with pytest.raises(ImageFormatError, match="odd"):
        image_to_rgb(_yuv_message(bag_factory, packed, "yuv422", pad=0))


@pytest.mark.parametrize("encoding", ["16UC3", "bayer_rggb8", "32FC1", "rgb16", "nv12"])
def test_unsupported_encodings_name_what_is_accepted(bag_factory, encoding):
    msg = image_msg(bag_factory, rgb_frame(0), 1)
    msg.encoding = encoding
    with pytest.raises(UnsupportedEncodingError, match="expected one of") as err:
        image_to_rgb(msg)
    assert encoding in str(err.value)


def test_inconsistent_step_and_data_are_refused(bag_factory):
    msg = image_msg(bag_factory, rgb_frame(0), 1)
    msg.step = msg.width * 3 - 1
    with pytest.raises(ImageFormatError, match="step"):
        image_to_rgb(msg)
    msg = image_msg(bag_factory, rgb_frame(0), 1)
    msg.data = msg.data[:-10]
    with pytest.raises(ImageFormatError, match="data has"):
        image_to_rgb(msg)


def test_data_as_bytes_or_array_is_accepted(bag_factory):
    import array

    rgb = rgb_frame(2)
    msg = image_msg(bag_factory, rgb, 1)
    for data in (bytes(msg.data), array.array("B", bytes(msg.data)), list(msg.data[:])):
        msg.data = data
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("fmt,lossless", [("PNG", True), ("JPEG", False)])
def test_compressed_png_and_jpeg(bag_factory, fmt, lossless):
    from PIL import Image

    rgb = rgb_frame(4)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    msg = bag_factory.new("sensor_msgs/msg/CompressedImage", header=bag_factory.header(1, "cam"),
                          format=f"rgb8; {fmt.lower()} compressed bgr8",
                          data=bag_factory.uint8_array(np.frombuffer(buf.getvalue(), np.uint8)))
    out = compressed_to_rgb(msg)
    assert out.shape == rgb.shape
    # PNG is lossless; a JPEG must decode to what the JPEG holds (an independent OpenCV decode)
    expected = rgb if lossless else cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= (0 if lossless else 3)


def test_compressed_garbage_and_compressed_depth_are_refused(bag_factory):
    msg = bag_factory.new("sensor_msgs/msg/CompressedImage", format="jpeg",
                          data=bag_factory.uint8_array(np.arange(50, dtype=np.uint8)))
    with pytest.raises(ImageFormatError, match="could not be decoded"):
        compressed_to_rgb(msg)
    msg.format = "16UC1; compressedDepth png"
    with pytest.raises(UnsupportedEncodingError, match="compressed depth"):
        compressed_to_rgb(msg)


def _depth_msg(factory, values: np.ndarray, encoding: str, bigendian: bool, pad: int = 0):
    dtype = values.dtype.newbyteorder(">" if bigendian else "<")
    raw = values.astype(dtype).view(np.uint8).reshape(values.shape[0], -1)
    if pad:
        raw = np.concatenate([raw, np.zeros((raw.shape[0], pad), np.uint8)], axis=1)
    return factory.new(IMAGE, header=factory.header(5, "depth"), height=values.shape[0], width=values.shape[1],
                       encoding=encoding, is_bigendian=int(bigendian), step=raw.shape[1],
                       data=factory.uint8_array(raw.reshape(-1)))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_16bit_depth_is_millimetres_in_either_byte_order(bag_factory, encoding, bigendian):
    mm = np.array([[0, 1000, 2500], [65535, 1, 300]], np.uint16)
    msg = _depth_msg(bag_factory, mm, encoding, bigendian, pad=2)
    np.testing.assert_array_equal(depth_array(msg), mm)
    np.testing.assert_allclose(depth_to_float(msg), mm.astype(np.float32) / 1000, rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_32fc1_depth_in_metres(bag_factory, bigendian):
    metres = np.array([[0.5, np.nan], [2.25, 10.0]], np.float32)
    out = depth_to_float(_depth_msg(bag_factory, metres, "32FC1", bigendian))
    np.testing.assert_array_equal(out, metres)


def test_unsupported_depth_encoding(bag_factory):
    msg = _depth_msg(bag_factory, np.zeros((2, 2), np.uint16), "16SC1", False)
    with pytest.raises(UnsupportedEncodingError, match="16UC1"):
        depth_to_float(msg)
