"""gmos_core.bridge: the GMOS ROS node's logic without rclpy, shared by the live node (gmos_ros) and
rosbag replay (gmos_core.bags / `gmos replay`).

Public API
----------
Parameters (``params``)
    ``NodeParams`` (frozen, validated dataclass; ``NodeParams.from_mapping(dict)``), ``PARAMETER_SPECS``
    (name, default, description, range/choices: drives the ROS parameter declarations), ``ParameterError``.

Conversions (``encodings``; duck-typed on message fields, rclpy and rosbags messages alike)
    ``image_to_rgb(msg) -> (H,W,3) uint8`` for rgb8, bgr8, rgba8, bgra8, mono8, yuv422/uyvy,
    yuv422_yuy2/yuyv (step padding honoured); ``compressed_to_rgb(msg)`` (jpeg/png);
    ``depth_to_float(msg) -> metres`` and ``depth_array(msg)`` for 16UC1/mono16 (mm) and 32FC1 (m),
    ``is_bigendian`` honoured. Errors: ``UnsupportedEncodingError``, ``ImageFormatError`` (ValueErrors).

Node logic (``core``)
    ``NodeCore(params, engine_factory, clock_ns=None, logger=None)``:
      ``activate()`` / ``deactivate()``                       build / free the engine
      ``on_image(image, camera_info=None, depth=None, compressed=False) -> bool``   callback side
      ``process_pending(max_frames=None) -> list[OutputRecord]``                  worker side
      ``flush() -> list[OutputRecord]``                       end of stream (look-ahead frames)
      ``request_reset(reason)``, ``set_enabled(bool)``          services
      ``start_worker(sink)`` / ``stop_worker()``              the live node's worker thread
      ``diagnostics() -> list[DiagnosticStatusRecord]``       /diagnostics content
      ``counters``                                            NodeCounters (received, segmented, skipped...)
    ``OutputRecord(result: FrameResult, source: InputFrame, rgb, latency_ns)``: one per segmented frame;
    ``record.header`` is the source image header (verbatim). ``InputFrame(image, camera_info, depth, ...)``.
    Replay: ``core.on_image(msg, ...); records = core.process_pending()`` per frame, then ``core.flush()``.

Messages (``messages``; one code path for both ROS worlds)
    ``MessageFactory`` with ``RclpyMessageFactory()`` (imports ``sensor_msgs.msg`` etc.) and
    ``RosbagsMessageFactory(typestore)`` (registers gmos_msgs, fills every dataclass field, numpy uint8[]);
    ``frame_output_messages(factory, record.result, record.header, camera_info=..., depth=..., rgb=...,
    instance_mask_encoding=..., publish_instance_mask=..., publish_masked_depth=..., publish_debug_image=...)
    -> {topic: msg}``; ``record_messages(factory, record, params, debug=False)`` does the same from a record;
    ``diagnostics_message(factory, stamp_ns, statuses)``; ``OUTPUT_TOPICS`` {relative topic: type name}.

Message definitions (``interfaces``)
    ``MSG_DEFINITIONS`` {type name: .msg text} identical to gmos_msgs/msg/*.msg;
    ``register_gmos_types(typestore)`` for rosbags typestores (Humble, Jazzy).
"""
from .core import (DIAGNOSTIC_ERROR, DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DiagnosticStatusRecord, EngineLike,
                   InputFrame, NodeCore, NodeCounters, OutputRecord)
from .encodings import (DEPTH_ENCODINGS, IMAGE_ENCODINGS, ImageFormatError, UnsupportedEncodingError,
                        compressed_to_rgb, depth_array, depth_to_float, image_to_rgb)
from .interfaces import MOVING_OBJECT, MOVING_OBJECT_ARRAY, MSG_DEFINITIONS, register_gmos_types
from .messages import (OUTPUT_TOPICS, TOPIC_DEBUG_IMAGE, TOPIC_DIAGNOSTICS, TOPIC_DYNAMIC_MASK,
                       TOPIC_DYNAMIC_MASK_INFO, TOPIC_INSTANCE_MASK, TOPIC_MASKED_DEPTH, TOPIC_OBJECTS,
                       MessageFactory, RclpyMessageFactory, RosbagsMessageFactory, diagnostics_message,
                       frame_output_messages, image_message, record_messages, stamp_to_ns)
from .params import PARAMETER_SPECS, NodeParams, ParameterError, ParamSpec

__all__ = [
    "DIAGNOSTIC_ERROR",
    "DIAGNOSTIC_OK",
    "DIAGNOSTIC_WARN",
    "DiagnosticStatusRecord",
    "EngineLike",
    "InputFrame",
    "NodeCore",
    "NodeCounters",
    "OutputRecord",
    "DEPTH_ENCODINGS",
    "IMAGE_ENCODINGS",
    "ImageFormatError",
    "UnsupportedEncodingError",
    "compressed_to_rgb",
    "depth_array",
    "depth_to_float",
    "image_to_rgb",
    "MOVING_OBJECT",
    "MOVING_OBJECT_ARRAY",
    "MSG_DEFINITIONS",
    "register_gmos_types",
    "OUTPUT_TOPICS",
    "TOPIC_DEBUG_IMAGE",
    "TOPIC_DIAGNOSTICS",
    "TOPIC_DYNAMIC_MASK",
    "TOPIC_DYNAMIC_MASK_INFO",
    "TOPIC_INSTANCE_MASK",
    "TOPIC_MASKED_DEPTH",
    "TOPIC_OBJECTS",
    "MessageFactory",
    "RclpyMessageFactory",
    "RosbagsMessageFactory",
    "diagnostics_message",
    "frame_output_messages",
    "image_message",
    "record_messages",
    "stamp_to_ns",
    "PARAMETER_SPECS",
    "NodeParams",
    "ParameterError",
    "ParamSpec",
]
