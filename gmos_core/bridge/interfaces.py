"""The gmos_msgs message definitions as text, for tools that work without a ROS install.

The texts are identical to ``gmos_msgs/msg/*.msg`` (a test compares them) so that a pip-installed
``gmos_core`` (which does not ship the ROS package folder) can still register the types in a rosbags
typestore, write bags that ROS tools read, and decode them again.
"""
from __future__ import annotations

from typing import Any

MOVING_OBJECT = "gmos_msgs/msg/MovingObject"
MOVING_OBJECT_ARRAY = "gmos_msgs/msg/MovingObjectArray"

MSG_DEFINITIONS: dict[str, str] = {
    MOVING_OBJECT: "# One segmented object on one frame (GMOS / GMOS-S).\n# The object's pixels are the pixels of MovingObjectArray.instance_mask (and of the `instance_mask` topic)\n# whose value equals instance_id.\n\n# Values of motion_state (they match gmos_core.engine.result.MotionState).\nuint8 MOTION_UNKNOWN=0   # not decided yet (e.g. too few frames in the window); treat conservatively\nuint8 MOTION_STATIC=1    # the object does not move on this frame\nuint8 MOTION_MOVING=2    # the object moves on this frame (its pixels are 255 in dynamic_mask)\n\nuint16 instance_id       # pixel value of this object in the instance label image, 1..65535 (0 = background)\nuint32 track_id          # identity that stays the same across frames for as long as the object is tracked\nuint8 motion_state       # one of MOTION_*\nfloat32 motion_probability  # probability in [0, 1] that the object moves on this frame\nfloat32 predicted_iou    # the model's own estimate of its mask quality (IoU with the true mask), in [0, 1]\nsensor_msgs/RegionOfInterest bbox  # bounding box in pixels of the source image (x_offset, y_offset, width, height; do_rectify false)\nuint32 pixel_count       # number of pixels of the instance label image equal to instance_id\n",
    MOVING_OBJECT_ARRAY: '# Everything GMOS says about one segmented frame.\n\nstd_msgs/Header header       # the header of the segmented source image, copied verbatim (stamp and frame_id)\nsensor_msgs/Image instance_mask  # instance label image at the source resolution, same header; pixel value =\n                                 # MovingObject.instance_id, 0 = background (encoding mono16, or mono8 where\n                                 # configured, then 255 = an object whose id does not fit)\nbuiltin_interfaces/Time[] window_stamps  # stamps of the frames the model looked at for this frame, oldest first\nMovingObject[] objects       # the objects on this frame, ordered by instance_id\n',
}


def register_gmos_types(typestore: Any) -> Any:
    """Register the gmos_msgs types in a rosbags typestore (in place) and return it.

    Works with ``rosbags.typesys.get_typestore(Stores.ROS2_HUMBLE)`` / ``ROS2_JAZZY``; registering twice
    is harmless. Only the standard types that every store holds are referenced (std_msgs,
    sensor_msgs, builtin_interfaces), so no further definitions are needed.
    """
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for typename, text in MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(text, typename))
    missing = [name for name in types if name not in typestore.fielddefs]
    if missing:
        typestore.register(types)
    return typestore
