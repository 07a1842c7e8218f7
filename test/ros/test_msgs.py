"""gmos_msgs: the .msg files parse with the real rosidl parser, round-trip through rosbags CDR (Humble and
Jazzy stores, types registered from these same files), and the package manifest is a valid rosidl package."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gmos_core.bridge import MSG_DEFINITIONS, OUTPUT_TOPICS, RosbagsMessageFactory, frame_output_messages
from gmos_core.engine.result import FrameIdentity, FrameResult, MotionState, ObjectResult

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-rosidl lives there, not in the test interpreter

ROSIDL_SCRIPT = r"""
import json, sys
from rosidl_adapter.parser import parse_message_string
out = {}
for path in sys.argv[1:]:
    name = path.rsplit('/', 1)[-1][:-4]
    spec = parse_message_string('gmos_msgs', name, open(path).read())
    out[name] = {
        'fields': [[str(f.type), f.name] for f in spec.fields],
        'constants': [[c.type, c.name, c.value] for c in spec.constants],
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def msg_files(repo_root):
    files = sorted((repo_root / "gmos_msgs" / "msg").glob("*.msg"))
    assert [f.name for f in files] == ["MovingObject.msg", "MovingObjectArray.msg"]
    return files


def test_msg_files_parse_with_rosidl(msg_files):
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found; the rosidl parser test needs Debian's python3-rosidl")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", ROSIDL_SCRIPT, *map(str, msg_files)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, ("rosidl parser failed (install with `apt-get install -y python3-rosidl`): "
                                  + proc.stderr[-2000:])
    parsed = json.loads(proc.stdout)
    obj = parsed["MovingObject"]
    assert obj["fields"] == [
        ["uint16", "instance_id"], ["uint32", "track_id"], ["uint8", "motion_state"],
        ["float32", "motion_probability"], ["float32", "predicted_iou"],
        ["sensor_msgs/RegionOfInterest", "bbox"], ["uint32", "pixel_count"],
    ]
    assert {c[1]: c[2] for c in obj["constants"]} == {
        "MOTION_UNKNOWN": int(MotionState.UNKNOWN), "MOTION_STATIC": int(MotionState.STATIC),
        "MOTION_MOVING": int(MotionState.MOVING)}
    assert parsed["MovingObjectArray"]["fields"] == [
        ["std_msgs/Header", "header"], ["sensor_msgs/Image", "instance_mask"],
        ["builtin_interfaces/Time[]", "window_stamps"], ["gmos_msgs/MovingObject[]", "objects"],
    ]


def test_every_field_is_documented(msg_files):
    for path in msg_files:
        for line in path.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert "#" in line, f"{path.name}: field without a comment: {line!r}"


def test_embedded_definitions_equal_the_msg_files(msg_files):
    for path in msg_files:
        assert MSG_DEFINITIONS[f"gmos_msgs/msg/{path.stem}"] == path.read_text(), path.name


def _result() -> FrameResult:
    labels = np.zeros((6, 8), np.uint16)
    labels[1:3, 2:5] = 1
    labels[4:6, 0:2] = 2
    objects = [ObjectResult(2, 11, MotionState.STATIC, 0.1, 0.7, (0, 4, 2, 2), 4),
               ObjectResult(1, 10, MotionState.MOVING, 0.9, 0.8, (2, 1, 3, 2), 6)]
    return FrameResult(frame=FrameIdentity(3, 1_700_000_000_123_456_789, "cam"), mode="gmos_online",
                       labels=labels, objects=objects, dynamic_mask=labels == 1,
                       window_stamps_ns=[1_699_999_999_900_000_000, 1_700_000_000_123_456_789])


@pytest.mark.parametrize("store", ["ROS2_HUMBLE", "ROS2_JAZZY"])
def test_cdr_round_trip_from_the_msg_files(msg_files, store):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(getattr(Stores, store))
    types = {}
    for path in msg_files:  # registered from the files themselves, not the embedded copy
        types.update(get_types_from_msg(path.read_text(), f"gmos_msgs/msg/{path.stem}"))
    ts.register(types)
    factory = RosbagsMessageFactory(ts)
    result = _result()
    header = factory.header(result.frame.stamp_ns, "cam")
    msgs = frame_output_messages(factory, result, header)
    for topic, msg in msgs.items():
        typename = OUTPUT_TOPICS[topic]
        back = ts.deserialize_cdr(ts.serialize_cdr(msg, typename), typename)
        assert back.header == header
    back = ts.deserialize_cdr(ts.serialize_cdr(msgs["objects"], "gmos_msgs/msg/MovingObjectArray"),
                              "gmos_msgs/msg/MovingObjectArray")
    assert [o.instance_id for o in back.objects] == [1, 2]  # ordered by instance id
    first = back.objects[0]
    assert (first.track_id, first.motion_state, first.pixel_count) == (10, first.MOTION_MOVING, 6)
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == (2, 1, 3, 2)
    assert first.motion_probability == pytest.approx(0.9) and first.predicted_iou == pytest.approx(0.8)
    assert [t.sec * 10**9 + t.nanosec for t in back.window_stamps] == result.window_stamps_ns
    labels = np.frombuffer(back.instance_mask.data.tobytes(), "<u2").reshape(6, 8)
    np.testing.assert_array_equal(labels, result.labels)
    assert back.instance_mask.encoding == "mono16" and back.instance_mask.step == 16


def test_package_manifest(repo_root):
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(repo_root / "gmos_msgs" / "package.xml"))
    assert pkg.package_format == 3 and pkg.name == "gmos_msgs"
    pkg.validate()
    assert pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]
    buildtool = {d.name for d in pkg.buildtool_depends}
    assert {"ament_cmake", "rosidl_default_generators"} <= buildtool
    depends = {d.name for d in pkg.build_depends} & {d.name for d in pkg.exec_depends}
    assert {"builtin_interfaces", "sensor_msgs", "std_msgs"} <= depends  # <depend> = build + exec
    assert "rosidl_default_runtime" in {d.name for d in pkg.exec_depends}
    cmake = (repo_root / "gmos_msgs" / "CMakeLists.txt").read_text()
    for path in (repo_root / "gmos_msgs" / "msg").glob("*.msg"):
        assert f'"msg/{path.name}"' in cmake, f"{path.name} is not generated by CMakeLists.txt"
    assert "DEPENDENCIES builtin_interfaces sensor_msgs std_msgs" in cmake


def test_output_options_and_mono8_label_images(bag_factory):
    result = _result()
    result.labels[0, 0] = 300  # an id that does not fit in mono8
    header = bag_factory.header(result.frame.stamp_ns, "cam")
    msgs = frame_output_messages(bag_factory, result, header, instance_mask_encoding="mono8",
                                 publish_instance_mask=False)
    assert set(msgs) == {"objects", "dynamic_mask"}  # no camera_info, depth or overlay given
    label = msgs["objects"].instance_mask
    assert (label.encoding, label.step) == ("mono8", 8)
    pixels = np.asarray(label.data).reshape(6, 8)
    assert pixels[0, 0] == 255 and pixels[1, 2] == 1 and pixels[4, 0] == 2
    dynamic = np.asarray(msgs["dynamic_mask"].data).reshape(6, 8)
    np.testing.assert_array_equal(dynamic == 255, result.labels == 1)  # only the MOVING object
    with pytest.raises(ValueError, match="expected 'mono16' or 'mono8'"):
        frame_output_messages(bag_factory, result, header, instance_mask_encoding="rgb8")
    result.skipped, result.skip_reason = True, "context only"
    with pytest.raises(ValueError, match="was not segmented"):
        frame_output_messages(bag_factory, result, header)


def test_dynamic_mask_from_states_when_the_engine_gives_none(bag_factory):
    result = _result()
    result.dynamic_mask = None  # e.g. an engine mode that only labels objects
    msgs = frame_output_messages(bag_factory, result, bag_factory.header(1, "cam"))
    dynamic = np.asarray(msgs["dynamic_mask"].data).reshape(6, 8)
    np.testing.assert_array_equal(dynamic == 255, result.labels == 1)
