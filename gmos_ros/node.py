"""The GMOS ROS 2 node: an rclpy lifecycle node over gmos_core.bridge.NodeCore.

    ros2 run gmos_ros gmos_node --ros-args -r image:=/camera/color/image_raw -p device:=cuda
    ros2 launch gmos_ros gmos.launch.py image_topic:=/camera/color/image_raw

Everything that is not ROS plumbing (encodings, overload policy, resets, diagnostics content, message
contents) lives in gmos_core.bridge and is shared with rosbag replay. This module imports rclpy and
the ROS message packages at import time: it is only imported to run the node. test/ros/real/ runs it on a
real ROS 2 Jazzy; test/ros/test_node_humble.py drives it through a test double for the Humble API.

Lifecycle (autostart configures and activates at start):
  configure:  validate parameters, create publishers and services, the diagnostics timer
  activate:   build the engine (load weights, warm up), start the worker thread, subscribe
  deactivate: unsubscribe, stop the worker, free the engine (and its GPU memory)
  cleanup:    destroy publishers, services and timers
A transition that fails logs why (exception type and message), undoes what it had done and returns FAILURE
(rclpy's LifecycleNode would swallow an exception silently); on_error releases everything and returns to
unconfigured.

rclpy.node.Node keeps its entities in private attributes (_publishers, _subscriptions, _services, _timers,
_clients, _guards, _parameters, ...): every private attribute of this class starts with ``_gmos_`` so that
none of them can shadow one.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Callable, Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool, Trigger

from gmos_core.bridge import (OUTPUT_TOPICS, PARAMETER_SPECS, TOPIC_DEBUG_IMAGE, TOPIC_DIAGNOSTICS, NodeCore,
                              NodeParams, OutputRecord, ParameterError, RclpyMessageFactory,
                              diagnostics_message, image_to_rgb, record_messages)
from gmos_core.bridge.engine_factory import build_engine
from gmos_core.bridge.params import SPECS_BY_NAME

try:  # Jazzy (and Humble): what spin raises when the context is shut down by SIGTERM
    from rclpy.executors import ExternalShutdownException
except ImportError:  # pragma: no cover - very old rclpy
    class ExternalShutdownException(Exception):  # type: ignore[no-redef]
        pass

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
        self._gmos_engine_factory = engine_factory
        self._gmos_messages = RclpyMessageFactory()
        self._gmos_parameter_problems: list[str] = []
        for spec in PARAMETER_SPECS:
            self._gmos_declare(spec)
        self.params: Optional[NodeParams] = None
        self.core: Optional[NodeCore] = None
        self._gmos_outputs: dict[str, Any] = {}
        self._gmos_inputs: list[Any] = []
        self._gmos_synchronizer: Any = None
        self._gmos_services: list[Any] = []
        self._gmos_diagnostics_timer: Any = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _gmos_declare(self, spec: Any) -> None:
        """Declare one parameter. rclpy checks the params file's value (type, range, step) right here and
        raises; the node records one clear line instead, declares the default, and refuses to configure."""
        try:
            self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec))
        except (InvalidParameterTypeException, InvalidParameterValueException) as err:
            override = getattr(self, "_parameter_overrides", {}).get(spec.name)  # rclpy keeps them there
            value = override.value if override is not None else None
            given = f"{value!r} ({type(value).__name__})" if override is not None else f"refused ({err})"
            hint = f" (write {float(value)!r})" if spec.type is float and type(value) is int else ""
            self._gmos_parameter_problems.append(spec.name)
            self.get_logger().error(f"GMOS: parameter {spec.name!r} = {given}; expected {spec.allowed()}{hint}; "
                                    "the node will not configure")
            self.declare_parameter(spec.name, spec.default, parameter_descriptor(spec), ignore_override=True)

    # ------------------------------------------------------------------ helpers
    def now_ns(self) -> int:
        """The node's clock (ROS time: follows /clock when use_sim_time is true)."""
        return self.get_clock().now().nanoseconds

    def read_params(self) -> NodeParams:
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETER_SPECS}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # said once below, in the node's log
            params = NodeParams.from_mapping(values)
        if values["model"]:
            self.get_logger().warning(f"GMOS: parameter 'model' is deprecated (one release); write "
                                      f"'mode: {params.mode}' instead")
        return params

    # ------------------------------------------------------------------ lifecycle
    def _gmos_transition(self, name: str, step: Callable[[], bool], undo: Callable[[], None]) -> TransitionCallbackReturn:
        """Run one transition; on an exception log its type and message, undo, and return FAILURE (rclpy's
        LifecycleNode would turn it into a silent ERROR)."""
        try:
            if step():
                return TransitionCallbackReturn.SUCCESS
        except Exception as err:
            self.get_logger().error(f"GMOS: {name} failed: {type(err).__name__}: {err}")
        self._gmos_quietly(undo)
        return TransitionCallbackReturn.FAILURE

    def _gmos_quietly(self, release: Callable[[], None]) -> None:
        try:
            release()
        except Exception as err:  # releasing is best effort; say what could not be released
            self.get_logger().error(f"GMOS: releasing resources failed: {type(err).__name__}: {err}")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        return self._gmos_transition("configure", self._gmos_configure, self._gmos_release_all)

    def _gmos_configure(self) -> bool:
        if self._gmos_parameter_problems:
            self.get_logger().error(f"GMOS: configure refused: parameter(s) {self._gmos_parameter_problems} had "
                                    "values rclpy refused at start (see above); fix them and restart the node")
            return False
        try:
            self.params = self.read_params()
        except ParameterError as err:
            self.get_logger().error(f"GMOS: invalid parameters: {err}")
            return False
        self._gmos_release_all()  # a configure after a failed one must not duplicate anything
        p = self.params
        out_qos = qos_profile(p.output_qos, p.output_qos_depth)
        for topic, typename in OUTPUT_TOPICS.items():
            if topic == TOPIC_DIAGNOSTICS:
                continue
            qos = qos_profile("BEST_EFFORT", 1) if topic == TOPIC_DEBUG_IMAGE else out_qos
            self._gmos_outputs[topic] = self.create_publisher(self._gmos_messages.message_class(typename), topic,
                                                              qos)
        self._gmos_outputs[TOPIC_DIAGNOSTICS] = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.core = NodeCore(p, self._gmos_engine_factory, clock_ns=self.now_ns, logger=self.get_logger(),
                             image_converter=cv_bridge_converter())
        self._gmos_services = [
            self.create_service(SetBool, "enable", self._on_enable),
            self.create_service(Trigger, "reset_window", self._on_reset_window),
        ]
        self._gmos_diagnostics_timer = self.create_timer(p.diagnostics_period_s, self.publish_diagnostics)
        self.get_logger().info(f"GMOS configured: mode={p.mode} tracker={p.tracker} input={p.input_transport} "
                               f"camera_info={p.use_camera_info} depth={p.use_depth}")
        return True

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        return self._gmos_transition("activate", self._gmos_activate, self._gmos_stop_processing)

    def _gmos_activate(self) -> bool:
        if self.core is None:
            raise RuntimeError("activate before configure")
        try:
            self.core.activate()
        except Exception as err:  # weights missing, CUDA unavailable...: say which, stay inactive
            self.get_logger().error(f"GMOS: could not build the engine: {type(err).__name__}: {err}")
            return False
        self.core.start_worker(self.publish_records)
        self._subscribe()
        return True

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        return self._gmos_transition("deactivate", self._gmos_deactivate, self._gmos_stop_processing)

    def _gmos_deactivate(self) -> bool:
        self._gmos_stop_processing()
        return True

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        return self._gmos_transition("cleanup", self._gmos_cleanup, self._gmos_release_all)

    def _gmos_cleanup(self) -> bool:
        self._gmos_release_all()
        return True

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        return self._gmos_transition("shutdown", self._gmos_cleanup, self._gmos_release_all)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        """A transition ended in ERROR: release the worker, the engine (GPU memory) and every entity, and go
        back to unconfigured."""
        self.get_logger().error(f"GMOS: error while leaving state '{state.label}': releasing everything; the "
                                "node is unconfigured")
        self._gmos_quietly(self._gmos_release_all)
        return TransitionCallbackReturn.SUCCESS

    def _gmos_stop_processing(self) -> None:
        """Undo activate: unsubscribe, stop the worker, drop the engine (and its GPU memory)."""
        self._unsubscribe()
        if self.core is not None:
            self.core.deactivate()

    def _gmos_release_all(self) -> None:
        """Undo configure (and activate): every publisher, service and timer the node created."""
        self._gmos_stop_processing()
        for publisher in self._gmos_outputs.values():
            self.destroy_publisher(publisher)
        for service in self._gmos_services:
            self.destroy_service(service)
        if self._gmos_diagnostics_timer is not None:
            self.destroy_timer(self._gmos_diagnostics_timer)
        self._gmos_outputs, self._gmos_services, self._gmos_diagnostics_timer, self.core = {}, [], None, None

    # ------------------------------------------------------------------ inputs
    def _subscribe(self) -> None:
        p = self.params
        qos = qos_profile(p.image_qos, p.image_qos_depth)
        compressed = p.input_transport == "compressed"
        image_type, image_topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        if not (p.use_camera_info or p.use_depth):
            self._gmos_inputs = [self.create_subscription(
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
        self._gmos_synchronizer = message_filters.ApproximateTimeSynchronizer(filters, p.sync_queue_size,
                                                                              p.sync_slop_s)
        self._gmos_synchronizer.registerCallback(self._on_synchronized)
        self._gmos_inputs = filters

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
                    f"{str(getattr(event, 'last_policy_kind', '?')).rsplit('_POLICY_', 1)[-1]}): no frames will arrive. Compare "
                    f"`ros2 topic info -v {topic}` and set image_qos (SENSOR_DATA accepts every publisher)")

        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    def _unsubscribe(self) -> None:
        for sub in self._gmos_inputs:
            inner = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps the subscription
            if inner is not None:
                self.destroy_subscription(inner)
        self._gmos_inputs, self._gmos_synchronizer = [], None

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
        outputs = self._gmos_outputs
        if not self.context.ok():  # shutting down (Ctrl-C): the publishers are going away
            return
        debug = outputs.get(TOPIC_DEBUG_IMAGE)
        want_debug = debug is not None and debug.get_subscription_count() > 0  # lazy overlay
        for record in records:
            for topic, msg in record_messages(self._gmos_messages, record, self.params, debug=want_debug).items():
                outputs[topic].publish(msg)

    def publish_diagnostics(self) -> None:
        core, publisher = self.core, self._gmos_outputs.get(TOPIC_DIAGNOSTICS)
        if core is None or publisher is None:
            return
        statuses = core.diagnostics(hardware_id=self.params.device)
        publisher.publish(diagnostics_message(self._gmos_messages, self.now_ns(), statuses))

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


# The node spins with a bounded wait (spin_once with this timeout while rclpy.ok()) rather than rclpy.spin:
# rclpy's SIGINT/SIGTERM handler shuts the context down and wakes the executor through a guard condition; in
# whole-test-suite runs a node under `ros2 run` sometimes did not stop on SIGTERM within 30 s (never reproduced
# alone), so the wait is bounded and the context checked after each one: a lost wake-up costs at most this long.
SPIN_POLL_S = 0.25


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of `ros2 run gmos_ros gmos_node` (autostart: configure + activate at once)."""
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=args)
    node: Optional[GmosNode] = None
    executor = None  # referenced until main returns: its __del__ must not run before stop signals are ignored
    try:
        node = GmosNode()
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("GMOS: configure failed; the node stays unconfigured")
            elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("GMOS: activate failed; the node stays inactive")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):  # Ctrl-C / SIGTERM: a normal stop
        pass
    finally:
        # Ctrl-C in a terminal reaches the node twice (the terminal's SIGINT and `ros2 launch` forwarding it):
        # a second signal while stopping must not end in a KeyboardInterrupt traceback (from atexit handlers, or
        # from an object's __del__).
        _ignore_stop_signals()
        if executor is not None:
            if node is not None:
                executor.remove_node(node)
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            if rclpy.ok():
                node.get_logger().info("GMOS: stopping")
            else:  # a signal shut the context down: /rosout cannot take it, the console can
                print("[gmos_node] GMOS: stopping", file=sys.stderr, flush=True)
            if node.core is not None:
                node.core.stop_worker()
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_stop_signals()  # try_shutdown puts the Python handlers back
    return 0


def _ignore_stop_signals() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
