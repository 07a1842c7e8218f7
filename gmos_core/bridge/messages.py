"""FrameResult → ROS messages, for rclpy message classes and rosbags typestore classes alike.

The two worlds build messages differently:

* rclpy classes take keyword arguments, default every missing field, type-check values, and want
  ``array.array('B')`` (or bytes-like sequences) for ``uint8[]`` fields;
* rosbags classes are dataclasses that need *every* field in the constructor and numpy arrays for
  ``uint8[]`` fields.

``MessageFactory`` hides that difference: ``new(typename, **fields)``, ``uint8_array(ndarray)`` and
``replace(msg, **changes)``. The builders below only talk to a factory, so the live node and the bag
writer produce the same messages from the same code. Type names are the full ROS 2 names
(``"sensor_msgs/msg/Image"``).
"""
from __future__ import annotations

import array
import dataclasses
import importlib
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional

import numpy as np

from gmos_core.engine.result import FrameResult, MotionState

from .encodings import depth_array, nearest_resize
from .interfaces import MOVING_OBJECT, MOVING_OBJECT_ARRAY, register_gmos_types

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"
ROI = "sensor_msgs/msg/RegionOfInterest"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
KEY_VALUE = "diagnostic_msgs/msg/KeyValue"

# Output topics (relative names, remappable) → message type. What the node publishes and what replay
# writes into output bags; '/diagnostics' is absolute by ROS convention.
TOPIC_OBJECTS = "objects"
TOPIC_DYNAMIC_MASK = "dynamic_mask"
TOPIC_DYNAMIC_MASK_INFO = "dynamic_mask/camera_info"
TOPIC_INSTANCE_MASK = "instance_mask"
TOPIC_MASKED_DEPTH = "masked_depth"
TOPIC_DEBUG_IMAGE = "debug_image"
TOPIC_DIAGNOSTICS = "/diagnostics"
OUTPUT_TOPICS: dict[str, str] = {
    TOPIC_OBJECTS: MOVING_OBJECT_ARRAY,
    TOPIC_DYNAMIC_MASK: IMAGE,
    TOPIC_DYNAMIC_MASK_INFO: CAMERA_INFO,
    TOPIC_INSTANCE_MASK: IMAGE,
    TOPIC_MASKED_DEPTH: IMAGE,
    TOPIC_DEBUG_IMAGE: IMAGE,
    TOPIC_DIAGNOSTICS: DIAGNOSTIC_ARRAY,
}


class MessageFactory(ABC):
    """Builds messages of one ROS world (rclpy or rosbags) from full type names."""

    @abstractmethod
    def new(self, typename: str, **fields: Any) -> Any:
        """A message of ``typename``; fields not given take their ROS defaults."""

    @abstractmethod
    def uint8_array(self, values: np.ndarray) -> Any:
        """The value to store in a ``uint8[]`` field for this world."""

    def replace(self, msg: Any, **changes: Any) -> Any:
        """A shallow copy of ``msg`` with some fields changed (the original is left alone)."""
        if dataclasses.is_dataclass(msg):
            return dataclasses.replace(msg, **changes)
        if hasattr(msg, "get_fields_and_field_types"):  # rclpy generated classes
            fields = {name: getattr(msg, name) for name in msg.get_fields_and_field_types()}
            fields.update(changes)
            return type(msg)(**fields)
        raise TypeError(f"cannot copy a {type(msg).__name__}; expected an rclpy or rosbags message")

    def time(self, stamp_ns: int) -> Any:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self.new(TIME, sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str = "") -> Any:
        return self.new(HEADER, stamp=self.time(stamp_ns), frame_id=frame_id)


class RclpyMessageFactory(MessageFactory):
    """Message classes imported from the ROS Python packages (``sensor_msgs.msg.Image``...)."""

    def __init__(self, import_module: Callable[[str], Any] = importlib.import_module):
        self._import = import_module
        self._classes: dict[str, type] = {}

    def message_class(self, typename: str) -> type:
        if typename not in self._classes:
            package, kind, name = _split_typename(typename)
            self._classes[typename] = getattr(self._import(f"{package}.{kind}"), name)
        return self._classes[typename]

    def new(self, typename: str, **fields: Any) -> Any:
        return self.message_class(typename)(**fields)

    def uint8_array(self, values: np.ndarray) -> Any:
        # array.array('B') is what rclpy stores for uint8[]; building it from bytes skips the per-element
        # type checks that a list or bytes object would go through.
        return array.array("B", np.ascontiguousarray(values, dtype=np.uint8).tobytes())


class RosbagsMessageFactory(MessageFactory):
    """Dataclasses of a rosbags typestore; gmos_msgs types are registered on construction."""

    def __init__(self, typestore: Any):
        self.typestore = register_gmos_types(typestore)

    def message_class(self, typename: str) -> type:
        try:
            return self.typestore.types[typename]
        except KeyError:
            raise KeyError(f"message type {typename!r} is not in the rosbags typestore") from None

    def new(self, typename: str, **fields: Any) -> Any:
        cls = self.message_class(typename)
        _, defs = self.typestore.fielddefs[typename]
        names = [name for name, _ in defs]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise TypeError(f"{typename} has no field(s) {unknown}; its fields are {names}")
        for name, desc in defs:
            if name not in fields:
                fields[name] = self._default(desc)
        return cls(**fields)

    def uint8_array(self, values: np.ndarray) -> Any:
        return np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)

    def _default(self, desc: Any) -> Any:
        """The ROS default of a field described by a rosbags field definition."""
        from rosbags.interfaces import Nodetype  # light: rosbags is already imported by the typestore

        kind, detail = desc
        if kind == Nodetype.BASE:
            return _BASE_DEFAULTS.get(detail[0], 0)
        if kind == Nodetype.NAME:
            return self.new(detail)
        element, length = detail
        if kind == Nodetype.ARRAY:  # fixed length
            if element[0] == Nodetype.BASE and element[1][0] != "string":
                return np.zeros(length, dtype=_NUMPY_DTYPES.get(element[1][0], np.float64))
            return [self._default(element) for _ in range(length)]
        # Nodetype.SEQUENCE
        if element[0] == Nodetype.BASE and element[1][0] != "string":
            return np.zeros(0, dtype=_NUMPY_DTYPES.get(element[1][0], np.float64))
        return []


_BASE_DEFAULTS = {"bool": False, "string": "", "float32": 0.0, "float64": 0.0}
_NUMPY_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def _split_typename(typename: str) -> tuple[str, str, str]:
    parts = typename.split("/")
    if len(parts) != 3:
        raise ValueError(f"message type {typename!r}; expected 'package/msg/Name'")
    return parts[0], parts[1], parts[2]


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

def stamp_to_ns(header: Any) -> int:
    """Header (or Time) → integer nanoseconds."""
    stamp = getattr(header, "stamp", header)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_message(factory: MessageFactory, header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """sensor_msgs/Image from an (H, W) or (H, W, C) array, little-endian, rows unpadded."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    row_bytes = pixels.nbytes // height if height else 0
    return factory.new(
        IMAGE, header=header, height=int(height), width=int(width), encoding=encoding, is_bigendian=0,
        step=int(row_bytes), data=factory.uint8_array(pixels.view(np.uint8).reshape(-1)),
    )


def instance_label_image(labels: np.ndarray, encoding: str) -> np.ndarray:
    """The label image in the chosen encoding (mono8: ids above 254 become 255 = 'does not fit')."""
    if encoding == "mono16":
        return labels.astype(np.uint16, copy=False)
    if encoding == "mono8":
        return np.minimum(labels, 255).astype(np.uint8)
    raise ValueError(f"instance mask encoding {encoding!r}; expected 'mono16' or 'mono8'")


def objects_message(factory: MessageFactory, header: Any, result: FrameResult, instance_mask: Any) -> Any:
    """gmos_msgs/MovingObjectArray for one segmented frame."""
    objects = []
    for obj in sorted(result.objects, key=lambda o: o.instance_id):
        x, y, w, h = (int(v) for v in obj.bbox_xywh)
        objects.append(factory.new(
            MOVING_OBJECT,
            instance_id=int(obj.instance_id),
            track_id=int(obj.track_id),
            motion_state=int(MotionState(obj.state)),
            motion_probability=float(obj.motion_prob),
            predicted_iou=float(obj.predicted_iou),
            bbox=factory.new(ROI, x_offset=x, y_offset=y, width=w, height=h, do_rectify=False),
            pixel_count=int(obj.pixel_count),
        ))
    return factory.new(
        MOVING_OBJECT_ARRAY, header=header, instance_mask=instance_mask,
        window_stamps=[factory.time(ns) for ns in result.window_stamps_ns], objects=objects,
    )


def dynamic_mask_array(result: FrameResult, mask_threshold: Optional[float] = None) -> np.ndarray:
    """mono8 pixels: 255 where something moves on this frame, 0 elsewhere (what SLAM consumers mask).

    With a foreground probability (GMOS-S) and ``mask_threshold``, the mask is ``fg_prob > threshold``.
    """
    if result.fg_prob is not None and mask_threshold is not None:
        mask = result.fg_prob > mask_threshold
    elif result.dynamic_mask is not None:
        mask = result.dynamic_mask
    else:
        moving = [o.instance_id for o in result.objects if o.state == MotionState.MOVING]
        mask = np.isin(result.labels, moving)
    return np.where(mask, np.uint8(255), np.uint8(0))


def masked_depth_message(factory: MessageFactory, depth_msg: Any, dynamic: np.ndarray) -> Any:
    """The depth image with dynamic pixels set to 0 (RTAB-Map's Vis/DepthAsMask ignores them).

    It keeps the depth message's own header and encoding; a mask of another size is resized (nearest).
    """
    values = depth_array(depth_msg).copy()
    mask = nearest_resize(dynamic > 0, values.shape[0], values.shape[1])
    values[mask] = 0
    return image_message(factory, depth_msg.header, values, str(depth_msg.encoding))


_PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]],
    dtype=np.float32,
)


def debug_overlay(rgb: np.ndarray, result: FrameResult) -> np.ndarray:
    """The source image with moving objects tinted (a colour per track) and static objects greyed."""
    out = rgb.astype(np.float32)
    for obj in result.objects:
        pixels = result.labels == obj.instance_id
        if obj.state == MotionState.MOVING:
            colour = _PALETTE[obj.track_id % len(_PALETTE)]
            out[pixels] = 0.45 * out[pixels] + 0.55 * colour
        else:
            out[pixels] = 0.7 * out[pixels] + 0.3 * 128.0
    if result.dynamic_mask is not None and not result.objects:  # GMOS-S: foreground only
        out[result.dynamic_mask] = 0.45 * out[result.dynamic_mask] + 0.55 * _PALETTE[0]
    return np.clip(out, 0, 255).astype(np.uint8)


def frame_output_messages(
    factory: MessageFactory,
    result: FrameResult,
    header: Any,
    *,
    camera_info: Optional[Any] = None,
    depth: Optional[Any] = None,
    rgb: Optional[np.ndarray] = None,
    instance_mask_encoding: str = "mono16",
    mask_threshold: Optional[float] = None,
    publish_instance_mask: bool = True,
    publish_masked_depth: bool = True,
    publish_debug_image: bool = False,
) -> dict[str, Any]:
    """All output messages for one segmented frame, keyed by topic (see OUTPUT_TOPICS).

    ``header`` is the source image's header and goes verbatim into every output (the masked depth
    keeps the depth's own header); the dynamic-mask camera_info is the input camera_info with that
    header. Optional topics appear only when their input exists and they are enabled.
    """
    if result.skipped:
        raise ValueError(f"frame {result.frame.index} was not segmented ({result.skip_reason}); "
                         "expected a segmented FrameResult")
    out: dict[str, Any] = {}
    instance = image_message(factory, header, instance_label_image(result.labels, instance_mask_encoding),
                             instance_mask_encoding)
    out[TOPIC_OBJECTS] = objects_message(factory, header, result, instance)
    dynamic = dynamic_mask_array(result, mask_threshold)
    out[TOPIC_DYNAMIC_MASK] = image_message(factory, header, dynamic, "mono8")
    if camera_info is not None:
        out[TOPIC_DYNAMIC_MASK_INFO] = factory.replace(camera_info, header=header)
    if publish_instance_mask:
        out[TOPIC_INSTANCE_MASK] = instance
    if depth is not None and publish_masked_depth:
        out[TOPIC_MASKED_DEPTH] = masked_depth_message(factory, depth, dynamic)
    if publish_debug_image and rgb is not None:
        out[TOPIC_DEBUG_IMAGE] = image_message(factory, header, debug_overlay(rgb, result), "rgb8")
    return out


def diagnostics_message(factory: MessageFactory, stamp_ns: int, statuses: list[Any]) -> Any:
    """diagnostic_msgs/DiagnosticArray from DiagnosticStatusRecord-like objects (level, name, message,
    hardware_id, values: dict[str, str])."""
    status_msgs = [
        factory.new(
            DIAGNOSTIC_STATUS, level=bytes([int(s.level)]) if _level_is_bytes(factory) else int(s.level),
            name=s.name, message=s.message, hardware_id=s.hardware_id,
            values=[factory.new(KEY_VALUE, key=k, value=str(v)) for k, v in s.values.items()],
        )
        for s in statuses
    ]
    return factory.new(DIAGNOSTIC_ARRAY, header=factory.header(stamp_ns, ""), status=status_msgs)


def _level_is_bytes(factory: MessageFactory) -> bool:
    """DiagnosticStatus.level is a ``byte``: rclpy wants a length-1 bytes object, rosbags an int."""
    return isinstance(factory, RclpyMessageFactory)


def record_messages(factory: MessageFactory, record: Any, params: Any, debug: bool = False) -> dict[str, Any]:
    """frame_output_messages for a NodeCore OutputRecord with the node's output parameters.

    ``debug``: also build the overlay (the live node passes "debug_image has subscribers").
    """
    return frame_output_messages(
        factory, record.result, record.header,
        camera_info=record.source.camera_info, depth=record.source.depth, rgb=record.rgb,
        instance_mask_encoding=params.instance_mask_encoding,
        mask_threshold=params.mask_threshold,
        publish_instance_mask=params.publish_instance_mask,
        publish_masked_depth=params.publish_masked_depth,
        publish_debug_image=bool(debug and params.publish_debug_image),
    )
