"""The GMOS ROS 2 node: an rclpy lifecycle node over gmos_core.bridge.NodeCore.

    ros2 run gmos_ros gmos_node --ros-args -r image:=/camera/color/image_raw -p device:=cuda
    ros2 launch gmos_ros gmos.launch.py image_topic:=/camera/color/image_raw

Everything that is not ROS plumbing (encodings, overload policy, resets, diagnostics content, message
contents) lives in gmos_core.bridge and is shared with rosbag replay. This module imports rclpy and
the ROS message packages at import time: it is only imported to run the node. The tests replace those
modules with a test double (test/ros/rclpy_double.py) in ``sys.modules`` before importing it.

Lifecycle (autostart configures and activates at start):
  configure:  validate parameters, create publishers and services, the diagnostics timer
  activate:   build the engine (load weights, warm up), start the worker thread, subscribe
  deactivate: unsubscribe, stop the worker, free the engine (and its GPU memory)
  cleanup:    destroy publishers, services and timers
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool, Trigger

from gmos_core.bridge import (OUTPUT_TOPICS, PARAMETER_SPECS, TOPIC_DEBUG_IMAGE, TOPIC_DIAGNOSTICS, NodeCore,
                              NodeParams, OutputRecord, ParameterError, RclpyMessageFactory,
                              diagnostics_message, image_to_rgb, record_messages)
from gmos_core.bridge.engine_factory import build_engine
from gmos_core.bridge.params import SPECS_BY_NAME

NODE_NAME = "gmos_node"


def qos_profile(preset: str, depth: int) -> QoSProfile:
    """QoS from a preset name (the node's *_qos parameters) and a history depth."""
    reliability = {
        "SENSOR_DATA": ReliabilityPolicy.BEST_EFFORT,
        "BEST_EFFORT": ReliabilityPolicy.BEST_EFFORT,
        "DEFAULT": ReliabilityPolicy.RELIABLE,
        "RELIABLE": ReliabilityPolicy.RELIABLE,
        "SYSTEM_DEFAULT": ReliabilityPolicy.SYSTEM_DEFAULT,
    }[preset]
    return QoSProfile(reliability=reliability, history=HistoryPolicy.KEEP_LAST, depth=depth,
                      durability=DurabilityPolicy.VOLATILE)


def parameter_descriptor(spec: Any) -> ParameterDescriptor:
    """ROS ParameterDescriptor (description, read-only flag, range, choices) for one ParamSpec."""
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices is not None:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.value_range is not None:
        low, high, step = spec.value_range
        if spec.type is float:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                                  step=float(step))]
        else:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=int(step))]
    return descriptor


def cv_bridge_converter() -> Callable[[Any], Any]:
    """Image → RGB with cv_bridge where it is installed, the numpy conversion otherwise (or when
    cv_bridge refuses an encoding, e.g. yuv422_yuy2 on older releases)."""
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return image_to_rgb
    bridge = CvBridge()
    handled = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}

    def convert(msg: Any) -> Any:
        if msg.encoding in handled:
            try:
                return bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
            except Exception:  # cv_bridge errors differ across releases; the numpy path decides
                pass
        return image_to_rgb(msg)

    return convert


class GmosNode(LifecycleNode):
    """Camera images in; instance masks, dynamic masks and per-object motion states out."""

    def __init__(self, node_name: str = NODE_NAME, *, engine_factory: Callable[[NodeParams], Any] = build_engine,
                 **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._engine_factory = engine_factory
        self._factory = RclpyMessageFactory()
        for spec in PARAMETER_SPECS:
            self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        self.params: Optional[NodeParams] = None
        self.core: Optional[NodeCore] = None
        self._publishers: dict[str, Any] = {}
        self._subscriptions: list[Any] = []
        self._synchronizer: Any = None
        self._services: list[Any] = []
        self._diagnostics_timer: Any = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ helpers
    def now_ns(self) -> int:
        """The node's clock (ROS time: follows /clock when use_sim_time is true)."""
        return self.get_clock().now().nanoseconds

    def read_params(self) -> NodeParams:
        return NodeParams.from_mapping({spec.name: self.get_parameter(spec.name).value for spec in PARAMETER_SPECS})

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.params = self.read_params()
        except ParameterError as err:
            self.get_logger().error(f"GMOS: invalid parameters: {err}")
            return TransitionCallbackReturn.FAILURE
        p = self.params
        out_qos = qos_profile(p.output_qos, p.output_qos_depth)
        for topic, typename in OUTPUT_TOPICS.items():
            if topic == TOPIC_DIAGNOSTICS:
                continue
            qos = qos_profile("BEST_EFFORT", 1) if topic == TOPIC_DEBUG_IMAGE else out_qos
            self._publishers[topic] = self.create_publisher(self._factory.message_class(typename), topic, qos)
        self._publishers[TOPIC_DIAGNOSTICS] = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.core = NodeCore(p, self._engine_factory, clock_ns=self.now_ns, logger=self.get_logger(),
                             image_converter=cv_bridge_converter())
        self._services = [
            self.create_service(SetBool, "enable", self._on_enable),
            self.create_service(Trigger, "reset_window", self._on_reset_window),
        ]
        self._diagnostics_timer = self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.get_logger().info(f"GMOS configured: model={p.model} input={p.input_transport} "
                               f"camera_info={p.use_camera_info} depth={p.use_depth}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        assert self.core is not None and self.params is not None
        try:
            self.core.activate()
        except Exception as err:  # weights missing, CUDA unavailable...: say which, stay inactive
            self.get_logger().error(f"GMOS: could not build the engine: {type(err).__name__}: {err}")
            return TransitionCallbackReturn.FAILURE
        self.core.start_worker(self.publish_records)
        self._subscribe()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._unsubscribe()
        if self.core is not None:
            self.core.deactivate()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._unsubscribe()
        if self.core is not None:
            self.core.deactivate()
        for publisher in self._publishers.values():
            self.destroy_publisher(publisher)
        for service in self._services:
            self.destroy_service(service)
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        self._publishers, self._services, self._diagnostics_timer, self.core = {}, [], None, None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        return self.on_cleanup(state)

    # ------------------------------------------------------------------ inputs
    def _subscribe(self) -> None:
        p = self.params
        qos = qos_profile(p.image_qos, p.image_qos_depth)
        compressed = p.input_transport == "compressed"
        image_type, image_topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        if not (p.use_camera_info or p.use_depth):
            self._subscriptions = [self.create_subscription(
                image_type, image_topic, lambda msg: self.on_image(msg, compressed=compressed), qos,
                event_callbacks=self._qos_warning(image_topic))]
            return
        import message_filters

        def subscriber(msg_type: Any, topic: str) -> Any:
            return message_filters.Subscriber(self, msg_type, topic, qos_profile=qos,
                                              event_callbacks=self._qos_warning(topic))

        filters = [subscriber(image_type, image_topic)]
        if p.use_camera_info:
            filters.append(subscriber(CameraInfo, "camera_info"))
        if p.use_depth:
            filters.append(subscriber(Image, "depth"))
        self._synchronizer = message_filters.ApproximateTimeSynchronizer(filters, p.sync_queue_size,
                                                                         p.sync_slop_s)
        self._synchronizer.registerCallback(self._on_synchronized)
        self._subscriptions = filters

    def _qos_warning(self, topic: str) -> Any:
        """Event callbacks that log once when a publisher's QoS cannot reach this subscription (the most
        common "no output" cause: e.g. a best-effort camera and a reliable subscription)."""
        try:
            from rclpy.event_handler import SubscriptionEventCallbacks  # Iron and later
        except ImportError:
            try:
                from rclpy.qos_event import SubscriptionEventCallbacks  # Humble
            except ImportError:
                return None
        warned = []

        def incompatible(event: Any) -> None:
            if not warned:
                warned.append(True)
                self.get_logger().warning(
                    f"GMOS: a publisher on '{topic}' offers a QoS incompatible with this subscription "
                    f"({self.params.image_qos}, depth {self.params.image_qos_depth}; policy "
                    f"{getattr(event, 'last_policy_kind', '?')}): no frames will arrive. Compare "
                    f"`ros2 topic info -v {topic}` and set image_qos (SENSOR_DATA accepts every publisher)")

        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    def _unsubscribe(self) -> None:
        for sub in self._subscriptions:
            inner = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps the subscription
            if inner is not None:
                self.destroy_subscription(inner)
        self._subscriptions, self._synchronizer = [], None

    def _on_synchronized(self, image: Any, *others: Any) -> None:
        p = self.params
        rest = list(others)
        camera_info = rest.pop(0) if p.use_camera_info else None
        depth = rest.pop(0) if p.use_depth else None
        self.on_image(image, camera_info=camera_info, depth=depth, compressed=p.input_transport == "compressed")

    def on_image(self, image: Any, camera_info: Any = None, depth: Any = None, compressed: bool = False) -> None:
        """Subscription callback: hand the frame to the core's queue (never runs the model)."""
        if self.core is not None:
            self.core.on_image(image, camera_info=camera_info, depth=depth, compressed=compressed)

    # ------------------------------------------------------------------ outputs
    def publish_records(self, records: list[OutputRecord]) -> None:
        """Worker thread: publish every output of each segmented frame (headers are the source's)."""
        debug = self._publishers.get(TOPIC_DEBUG_IMAGE)
        want_debug = debug is not None and debug.get_subscription_count() > 0  # lazy overlay
        for record in records:
            for topic, msg in record_messages(self._factory, record, self.params, debug=want_debug).items():
                self._publishers[topic].publish(msg)

    def publish_diagnostics(self) -> None:
        if self.core is None:
            return
        statuses = self.core.diagnostics(hardware_id=self.params.device)
        self._publishers[TOPIC_DIAGNOSTICS].publish(diagnostics_message(self._factory, self.now_ns(), statuses))

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        """Run-time changes of the parameters that allow them (mask_threshold, enabled); rclpy itself
        refuses read-only ones."""
        changes = {}
        for parameter in parameters:
            spec = SPECS_BY_NAME.get(parameter.name)
            if spec is None:  # use_sim_time and other rclpy parameters
                continue
            if spec.read_only and self.params is not None:
                return SetParametersResult(successful=False, reason=f"{parameter.name} is read-only; "
                                           "set it in the params file and re-configure the node")
            try:
                changes[parameter.name] = spec.validate(parameter.value)
            except ParameterError as err:
                return SetParametersResult(successful=False, reason=str(err))
        if self.params is not None and changes:
            self.params = self.params.replace(**changes)
            if self.core is not None:
                self.core.params = self.params
                if "enabled" in changes:
                    self.core.set_enabled(changes["enabled"])
        return SetParametersResult(successful=True, reason="")

    # ------------------------------------------------------------------ services
    def _on_enable(self, request: Any, response: Any) -> Any:
        self.core.set_enabled(bool(request.data))
        response.success = True
        response.message = "enabled" if request.data else "disabled (window cleared)"
        return response

    def _on_reset_window(self, request: Any, response: Any) -> Any:
        self.core.request_reset("reset_window service called")
        response.success = True
        response.message = "window reset"
        return response


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of `ros2 run gmos_ros gmos_node` (autostart: configure + activate at once)."""
    rclpy.init(args=args)
    node = GmosNode()
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("GMOS: configure failed; the node stays unconfigured")
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("GMOS: activate failed; the node stays inactive")
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        if node.core is not None:
            node.core.stop_worker()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
