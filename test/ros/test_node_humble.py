"""gmos_ros.node through the Humble-flavoured rclpy double (test/ros/rclpy_double.py), on the real tiny engine.

The node's behaviour on a real ROS 2 (Jazzy) is tested in test/ros/real through real processes and DDS.
What stays here is what that tier cannot reach: the Humble API (rclpy.qos_event, no rclpy.event_handler),
cv_bridge (not in the kit), the lazy debug overlay and the worker under a burst delivered in-process; plus
checks that the double behaves like real rclpy where it matters (shadowed entity lists, swallowed transition
exceptions, descriptors enforced at declaration), so that a test passing here would pass on real rclpy."""
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
    modules["rclpy"].init()
    yield modules, node_module
    modules["rclpy"].try_shutdown()


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


def test_debug_image_is_lazy_and_enable_gates_input(ros, tiny_engine_factory):
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


# ---------------------------------------------------------------------------------------- Humble API
def test_humble_qos_event_callbacks_give_one_incompatible_qos_warning(ros, tiny_engine_factory):
    modules, _ = ros
    node = make_node(ros, tiny_engine_factory, image_qos="RELIABLE")
    assert node.trigger_configure() == D.TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == D.TransitionCallbackReturn.SUCCESS
    (sub,) = node.subscriptions
    assert isinstance(sub.event_callbacks, modules["rclpy.qos_event"].SubscriptionEventCallbacks)
    for _ in range(2):  # a best-effort camera appears: one warning, not one per event
        sub.event_callbacks.incompatible_qos(D.QoSRequestedIncompatibleQoSInfo(1, 1, 2))
    (warning,) = [m for m in node.get_logger().messages("warning") if "incompatible" in m]
    assert "ros2 topic info -v image" in warning and "RELIABLE" in warning
    node.trigger_deactivate()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, D.ExternalShutdownException])
def test_main_autostarts_and_stops_on_ctrl_c_or_sigterm(ros, monkeypatch, tiny_engine_factory, stop):
    _, node_module = ros
    created = []

    class Recorder(node_module.GmosNode):
        def __init__(self):
            super().__init__(engine_factory=tiny_engine_factory,
                             parameter_overrides=[D.Parameter(k, v) for k, v in BASE.items()])
            created.append(self)

    ignored = []
    monkeypatch.setattr(node_module, "GmosNode", Recorder)
    monkeypatch.setattr(node_module, "_ignore_stop_signals", lambda: ignored.append(True))  # not in pytest
    monkeypatch.setitem(D._STATE, "spin_raises", stop)
    assert node_module.main([]) == 0
    assert ignored  # a second Ctrl-C while stopping is ignored
    (node,) = created
    assert node.lifecycle_state == "active" and getattr(node, "destroyed", False)
    assert node.core._worker is None  # the worker thread was stopped


# ------------------------------------------------------------------------- the double behaves like rclpy
def test_double_breaks_a_node_that_shadows_rclpy_entity_lists_as_rclpy_does(ros):
    class Shadowing(D.LifecycleNode):
        def __init__(self):
            super().__init__("shadowing")
            self._publishers = {}  # the bug gmos_ros.node had: rclpy's list replaced by a dict

        def on_configure(self, state):
            self.create_publisher(object, "out", 10)
            return D.TransitionCallbackReturn.SUCCESS

    node = Shadowing()
    # rclpy swallows the exception: ERROR, the default on_error fails, the node is finalized, nothing logged
    assert node.trigger_configure() == D.TransitionCallbackReturn.ERROR
    assert node.lifecycle_state == "finalized" and node.get_logger().records == []


def test_gmos_node_shadows_no_rclpy_attribute(ros, tiny_engine_factory):
    plain = D.LifecycleNode("plain")
    node = make_node(ros, tiny_engine_factory)
    for name, value in vars(plain).items():
        assert type(getattr(node, name)) is type(value), name


def test_transition_exception_is_logged_and_released(ros, tiny_engine_factory):
    node = make_node(ros, tiny_engine_factory)
    assert node.trigger_configure() == D.TransitionCallbackReturn.SUCCESS

    def broken_subscribe():
        raise RuntimeError("subscription refused")

    node._subscribe = broken_subscribe
    assert node.trigger_activate() == D.TransitionCallbackReturn.FAILURE
    (error,) = node.get_logger().messages("error")
    assert error == "GMOS: activate failed: RuntimeError: subscription refused"
    assert node.lifecycle_state == "inactive" and node.core.engine is None and node.core._worker is None
    # on_error (reached when rclpy turns an escaped exception into ERROR) releases everything
    assert node.on_error(D.State(0, "active")) == D.TransitionCallbackReturn.SUCCESS
    assert list(node.publishers) == [] and list(node.services) == [] and list(node.timers) == []
    assert node.core is None
    assert node.trigger_cleanup() == D.TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == D.TransitionCallbackReturn.SUCCESS
    topics = [p.topic_name for p in node.publishers]
    assert len(topics) == len(set(topics)) == 7  # configure again: each publisher once


@pytest.mark.parametrize("name,value,expected", [
    ("fps", 30, "parameter 'fps' = 30 (int); expected a float in [0.0, 1000.0] (write 30.0)"),
    ("mask_threshold", 1.5, "parameter 'mask_threshold' = 1.5 (float); expected a float in [0.0, 1.0]"),
    ("window_size", 4, "parameter 'window_size' = 4 (int); expected an integer in [1, 15] in steps of 2"),
    ("sync_slop_s", 0.0, "parameter 'sync_slop_s' = 0.0 (float); expected a float in [0.0001, 1.0]"),
])
def test_values_rclpy_refuses_at_declaration_give_one_line_and_no_configure(ros, tiny_engine_factory, name,
                                                                            value, expected):
    node = make_node(ros, tiny_engine_factory, **{name: value})
    (line,) = node.get_logger().messages("error")
    assert expected in line
    assert node.trigger_configure() == D.TransitionCallbackReturn.FAILURE
    assert node.lifecycle_state == "unconfigured" and list(node.publishers) == []
    assert name in node.get_logger().messages("error")[-1]


@pytest.mark.parametrize("name,value,expected", [
    ("image_qos", "FAST", "one of"), ("device", "gpu", "'cpu', 'cuda' or 'cuda:N'"),
    ("max_queue_frames", 3, "at least one window"), ("mode", "gmos_offline", "one of"),
])
def test_values_checked_at_configure_fail_it_with_one_line(ros, tiny_engine_factory, name, value, expected):
    node = make_node(ros, tiny_engine_factory, **{name: value})
    assert node.trigger_configure() == D.TransitionCallbackReturn.FAILURE
    (error,) = node.get_logger().messages("error")
    assert name in error and expected in error
    assert node.lifecycle_state == "unconfigured" and list(node.publishers) == [] and node.core is None


def test_deprecated_model_parameter_is_read_as_mode_with_a_warning(ros, tiny_engine_factory):
    params = {k: v for k, v in BASE.items() if k != "mode"}
    _, node_module = ros
    node = node_module.GmosNode(engine_factory=tiny_engine_factory, parameter_overrides=[
        D.Parameter(k, v) for k, v in {**params, "model": "gmos_s"}.items()])
    assert node.trigger_configure() == D.TransitionCallbackReturn.SUCCESS
    assert node.params.mode == "gmos_s"
    (warning,) = [m for m in node.get_logger().messages("warning") if "deprecated" in m]
    assert "mode: gmos_s" in warning


def test_message_filters_double_pairs_strictly_below_the_slop(ros):
    modules, _ = ros
    sensor = modules["sensor_msgs.msg"]
    node = D.Node("sync")
    subs = [D.FilterSubscriber(node, sensor.Image, t, qos_profile=10) for t in ("a", "b")]
    sync = D.ApproximateTimeSynchronizer(subs, 10, 0.01)
    pairs = []
    sync.registerCallback(lambda *msgs: pairs.append(msgs))

    def msg(ns):
        stamp = modules["builtin_interfaces.msg"].Time(sec=ns // 10**9, nanosec=ns % 10**9)
        return sensor.Image(header=modules["std_msgs.msg"].Header(stamp=stamp))

    node.deliver("a", msg(10**9))
    node.deliver("b", msg(10**9 + 10_000_000))  # exactly the slop apart: real message_filters does not pair
    assert pairs == []
    node.deliver("b", msg(10**9 + 9_000_000))
    assert len(pairs) == 1
