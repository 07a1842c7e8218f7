"""gmos_ros.node through the rclpy test double, on the real tiny engine: lifecycle, QoS, parameters with
descriptors, synchronised camera_info/depth, headers, worker thread, services, lazy debug image,
diagnostics and sim time."""
from __future__ import annotations

import array
import importlib
import threading
import time

import numpy as np
import pytest

from gmos_core.bridge import PARAMETER_SPECS

from . import rclpy_double as D
from .conftest import HEIGHT, PERIOD_NS, WIDTH, rgb_frame

T0 = 1_700_000_000 * 10**9
BASE = dict(mode="gmos_s", device="cpu", precision="fp32", tiny_random_model=True, fps=8.0,
            pixel_limit=14 * 14 * 12, use_camera_info=False)


@pytest.fixture
def ros(monkeypatch):
    modules = D.install(monkeypatch)
    node_module = importlib.import_module("gmos_ros.node")
    return modules, node_module


def make_node(ros, engine_factory, **params):
    _, node_module = ros
    overrides = [D.Parameter(k, v) for k, v in {**BASE, **params}.items()]
    return node_module.GmosNode(engine_factory=engine_factory, parameter_overrides=overrides)


def ros_image(modules, rgb, stamp_ns, frame_id="cam", encoding="rgb8"):
    msg_mod = modules["sensor_msgs.msg"]
    sec, nsec = divmod(stamp_ns, 10**9)
    header = modules["std_msgs.msg"].Header(stamp=modules["builtin_interfaces.msg"].Time(sec=sec, nanosec=nsec),
                                            frame_id=frame_id)
    pixels = rgb if encoding == "rgb8" else rgb[..., ::-1]
    return msg_mod.Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                         is_bigendian=0, step=rgb.shape[1] * 3, data=array.array("B", pixels.tobytes()))


def wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class ThreadRecordingEngine:
    """Wraps the real engine and records which thread runs push()."""

    def __init__(self, engine):
        self.engine, self.push_threads = engine, set()

    def push(self, *args, **kwargs):
        self.push_threads.add(threading.get_ident())
        return self.engine.push(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_parameters_are_declared_with_descriptors_and_ranges(ros, tiny_engine_factory):
    node = make_node(ros, tiny_engine_factory)
    for spec in PARAMETER_SPECS:
        descriptor = node.descriptors[spec.name]
        assert descriptor.description == spec.description
        if spec.value_range is not None:
            ranges = descriptor.floating_point_range or descriptor.integer_range
            assert ranges and ranges[0].from_value == spec.value_range[0] and ranges[0].to_value == spec.value_range[1]
        if spec.choices:
            assert all(choice in descriptor.additional_constraints for choice in spec.choices)
    assert node.get_parameter("window_size").value == 5


@pytest.mark.parametrize("name,value,expected", [
    ("window_size", 4, "odd"), ("image_qos", "FAST", "one of"), ("mask_threshold", 1.5, "[0.0, 1.0]"),
    ("device", "gpu", "'cpu', 'cuda' or 'cuda:N'"), ("max_queue_frames", 3, "at least one window"),
])
def test_invalid_parameters_fail_configure_with_a_clear_error(ros, tiny_engine_factory, name, value, expected):
    node = make_node(ros, tiny_engine_factory, **{name: value})
    assert node.trigger_configure() == D.TransitionCallbackReturn.FAILURE
    errors = node.get_logger().messages("error")
    assert len(errors) == 1 and name in errors[0] and expected in errors[0]
    assert node.lifecycle_state == "unconfigured" and node.publishers == [] and node.core is None


def test_run_time_parameter_changes(ros, tiny_engine_factory):
    node = make_node(ros, tiny_engine_factory)
    node.trigger_configure()
    (ok,) = node.set_parameters([D.Parameter("mask_threshold", 0.7)])
    assert ok.successful and node.core.params.mask_threshold == 0.7
    (bad,) = node.set_parameters([D.Parameter("mask_threshold", 2.0)])
    assert not bad.successful and "[0.0, 1.0]" in bad.reason and node.core.params.mask_threshold == 0.7
    (read_only,) = node.set_parameters([D.Parameter("window_size", 7)])
    assert not read_only.successful and node.core.params.window_size == 5
    (off,) = node.set_parameters([D.Parameter("enabled", False)])
    assert off.successful and not node.core.enabled


def test_topics_qos_and_services(ros, tiny_engine_factory):
    node = make_node(ros, tiny_engine_factory)
    assert node.trigger_configure() == D.TransitionCallbackReturn.SUCCESS
    topics = {p.topic_name: p for p in node.publishers}
    assert set(topics) == {"objects", "dynamic_mask", "dynamic_mask/camera_info", "instance_mask", "masked_depth",
                           "debug_image", "/diagnostics"}
    assert all(not t.startswith("/") for t in topics if t != "/diagnostics")  # remappable
    assert topics["dynamic_mask"].qos.reliability == D.ReliabilityPolicy.RELIABLE
    assert topics["debug_image"].qos.reliability == D.ReliabilityPolicy.BEST_EFFORT
    assert {s.srv_name for s in node.services} == {"enable", "reset_window"}
    assert node.subscriptions == []  # inactive: not subscribed yet
    assert node.trigger_activate() == D.TransitionCallbackReturn.SUCCESS
    (sub,) = node.subscriptions
    assert sub.topic_name == "image" and sub.qos.reliability == D.ReliabilityPolicy.BEST_EFFORT
    assert sub.qos.depth == 1
    for _ in range(2):  # a reliable-only publisher appears: one warning, not one per event
        sub.event_callbacks.incompatible_qos(D.QoSRequestedIncompatibleQoSInfo(1, 1, 2))
    (warning,) = [m for m in node.get_logger().messages("warning") if "incompatible" in m]
    assert "ros2 topic info -v image" in warning and "SENSOR_DATA" in warning
    assert node.trigger_deactivate() == D.TransitionCallbackReturn.SUCCESS
    assert node.subscriptions == [] and node.core.engine is None
    assert node.trigger_cleanup() == D.TransitionCallbackReturn.SUCCESS
    assert node.publishers == [] and node.services == [] and node.timers == []


def test_compressed_transport_subscribes_to_image_compressed(ros, tiny_engine_factory):
    node = make_node(ros, tiny_engine_factory, input_transport="compressed", image_qos="RELIABLE",
                     image_qos_depth=3)
    node.trigger_configure()
    node.trigger_activate()
    (sub,) = node.subscriptions
    assert sub.topic_name == "image/compressed" and sub.msg_type.__name__ == "CompressedImage"
    assert sub.qos.reliability == D.ReliabilityPolicy.RELIABLE and sub.qos.depth == 3
    node.trigger_deactivate()


def test_cv_bridge_is_used_where_installed_with_numpy_fallback(ros, monkeypatch, bag_factory):
    import types

    from .conftest import image_msg

    calls = []

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            calls.append((msg.encoding, desired_encoding))
            if msg.encoding == "bgra8":
                raise RuntimeError("cv_bridge refused")  # e.g. an older release
            return np.zeros((msg.height, msg.width, 3), np.uint8)

    monkeypatch.setitem(__import__("sys").modules, "cv_bridge", types.SimpleNamespace(CvBridge=CvBridge))
    convert = ros[1].cv_bridge_converter()
    rgb = rgb_frame(0)
    assert not convert(image_msg(bag_factory, rgb, 1, encoding="bgr8")).any()  # cv_bridge's answer
    np.testing.assert_array_equal(convert(image_msg(bag_factory, rgb, 1, encoding="bgra8")), rgb)  # fallback
    yuyv = image_msg(bag_factory, rgb, 1, encoding="mono8")
    yuyv.encoding, yuyv.width = "yuv422_yuy2", WIDTH // 2  # same bytes read as 2 bytes per pixel
    assert convert(yuyv).shape == (HEIGHT, WIDTH // 2, 3)  # numpy only: cv_bridge is not asked
    assert calls == [("bgr8", "rgb8"), ("bgra8", "rgb8")]


def test_activate_failure_is_reported_not_raised(ros):
    def broken(params):
        raise FileNotFoundError("Pi3 weights not found: /nope.safetensors")

    node = make_node(ros, broken)
    node.trigger_configure()
    assert node.trigger_activate() == D.TransitionCallbackReturn.FAILURE
    assert "/nope.safetensors" in node.get_logger().messages("error")[0]
    assert node.subscriptions == []


def test_synchronised_stream_publishes_every_output_with_the_source_header(ros, tiny_engine_factory):
    modules, _ = ros
    engines = []

    def factory(params):
        engines.append(ThreadRecordingEngine(tiny_engine_factory(params)))
        return engines[-1]

    node = make_node(ros, factory, use_camera_info=True, use_depth=True, use_sim_time=True)
    node.trigger_configure()
    node.trigger_activate()
    assert {s.topic_name for s in node.subscriptions} == {"image", "camera_info", "depth"}
    node.publisher("debug_image").subscription_count = 1  # someone watches the overlay
    sensor = modules["sensor_msgs.msg"]
    images, depths = [], []
    for i in range(3):
        stamp = T0 + i * PERIOD_NS
        node.set_sim_time(stamp)
        image = ros_image(modules, rgb_frame(i), stamp, encoding="bgr8")
        depth_header = modules["std_msgs.msg"].Header(stamp=image.header.stamp, frame_id="cam")
        mm = np.full((HEIGHT, WIDTH), 1500, np.uint16)
        depth = sensor.Image(header=depth_header, height=HEIGHT, width=WIDTH, encoding="16UC1", is_bigendian=0,
                             step=WIDTH * 2, data=array.array("B", mm.tobytes()))
        info = sensor.CameraInfo(header=modules["std_msgs.msg"].Header(stamp=image.header.stamp, frame_id="cam"),
                                 height=HEIGHT, width=WIDTH, distortion_model="plumb_bob")
        # different arrival orders: the synchroniser pairs them by stamp
        deliveries = [("camera_info", info), ("depth", depth), ("image", image)]
        for topic, msg in (deliveries if i % 2 else deliveries[::-1]):
            started = time.perf_counter()
            node.deliver(topic, msg)
            assert time.perf_counter() - started < 0.5  # the callback never runs the model
        images.append(image)
        depths.append(depth)
    node.service("reset_window").call(modules["std_srvs.srv"].Trigger.Request())  # flushes the look-ahead
    assert wait_for(lambda: len(node.publisher("objects").published) == 3)
    for topic in ("objects", "dynamic_mask", "dynamic_mask/camera_info", "instance_mask", "debug_image"):
        published = node.publisher(topic).published
        assert [m.header for m in published] == [img.header for img in images], topic
    for mask, depth_out, depth_in in zip(node.publisher("dynamic_mask").published,
                                         node.publisher("masked_depth").published, depths):
        assert depth_out.header == depth_in.header and depth_out.encoding == "16UC1"
        dynamic = np.frombuffer(bytes(mask.data), np.uint8).reshape(HEIGHT, WIDTH) > 0
        values = np.frombuffer(bytes(depth_out.data), "<u2").reshape(HEIGHT, WIDTH)
        np.testing.assert_array_equal(values == 0, dynamic)
        assert (mask.height, mask.width, mask.encoding) == (HEIGHT, WIDTH, "mono8")
    assert node.publisher("dynamic_mask/camera_info").published[0].distortion_model == "plumb_bob"
    assert threading.get_ident() not in engines[0].push_threads  # the engine runs in the worker thread
    # diagnostics, on the node's (simulated) clock
    node.timers[0].fire()
    (status,) = node.publisher("/diagnostics").published[-1].status
    values = {kv.key: kv.value for kv in status.values}
    assert values["frames_segmented"] == "3" and values["resets"] == "1"
    assert values["input_rate_hz"] == "8.00"
    assert float(values["latency_ms_max"]) == pytest.approx(2 * PERIOD_NS / 1e6)
    assert status.level == b"\x00" and values["gpu_memory_mb"] == "n/a"
    node.trigger_deactivate()


def test_debug_image_is_lazy_and_enable_service_gates_input(ros, tiny_engine_factory):
    modules, _ = ros
    node = make_node(ros, tiny_engine_factory)
    node.trigger_configure()
    node.trigger_activate()
    set_bool = modules["std_srvs.srv"].SetBool
    response = node.service("enable").call(set_bool.Request(data=False))
    assert response.success and "disabled" in response.message
    node.deliver("image", ros_image(modules, rgb_frame(0), T0))
    assert node.core.counters.ignored_disabled == 1
    node.service("enable").call(set_bool.Request(data=True))
    node.deliver("image", ros_image(modules, rgb_frame(1), T0 + PERIOD_NS))
    node.core.request_reset("end of test stream")
    assert wait_for(lambda: len(node.publisher("objects").published) == 1)
    assert node.publisher("debug_image").published == []  # nobody subscribed: no overlay built
    node.trigger_deactivate()


def test_main_runs_autostart_and_shuts_down(ros, monkeypatch, tiny_engine_factory):
    _, node_module = ros
    created = []

    class Recorder(node_module.GmosNode):
        def __init__(self):
            super().__init__(engine_factory=tiny_engine_factory,
                             parameter_overrides=[D.Parameter(k, v) for k, v in BASE.items()])
            created.append(self)

    monkeypatch.setattr(node_module, "GmosNode", Recorder)
    assert node_module.main([]) == 0  # the double's spin returns as on Ctrl-C
    (node,) = created
    assert node.lifecycle_state == "active" and getattr(node, "destroyed", False)
    assert node.core._worker is None  # the worker thread was stopped


def test_threaded_overload_accounts_for_every_frame(ros, tiny_engine_factory):
    """Frames delivered much faster than the worker runs: the queue stays bounded, outputs keep stream order
    and carry their own headers, and every received frame is output, context-only or dropped."""
    modules, _ = ros
    node = make_node(ros, tiny_engine_factory, max_queue_frames=5, skip_backlog_frames=1)
    node.trigger_configure()
    node.trigger_activate()
    images = [ros_image(modules, rgb_frame(i), T0 + i * PERIOD_NS) for i in range(20)]
    for image in images[:14]:
        node.deliver("image", image)  # back to back: far faster than any model
        assert node.core.queue_length <= 5
    for image in images[14:]:  # then at the pace the worker keeps up with
        assert wait_for(lambda: node.core.queue_length == 0)
        node.deliver("image", image)
    node.core.request_reset("end of stream")  # flush the look-ahead frames
    c = node.core.counters
    assert wait_for(lambda: node.core.queue_length == 0 and c.segmented + c.skipped_frames + c.dropped_frames == 20)
    published = [m.header for m in node.publisher("objects").published]
    order = {id(img.header): i for i, img in enumerate(images)}
    positions = [order[id(h)] for h in published]  # the very header objects of the inputs
    assert positions == sorted(positions) and len(positions) == c.segmented >= 1
    assert c.skipped_windows >= 2 and c.dropped_frames >= 5 and c.received == 20
    node.trigger_deactivate()
