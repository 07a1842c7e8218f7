"""A test double of the small rclpy surface gmos_ros.node uses, in its ROS 2 **Humble** flavour.

The node runs on a real ROS 2 Jazzy in test/ros/real (the kit in ../shared/ros2). Humble has no such wheels,
so what differs on Humble is covered here: ``rclpy.qos_event`` instead of ``rclpy.event_handler``, the
Humble signatures (rclpy Humble: Node.create_publisher(msg_type, topic, qos_profile, *, ...),
create_subscription(msg_type, topic, callback, qos_profile, *, ...), create_service(srv_type, name,
callback), create_timer(period_sec, callback), declare_parameter(name, value, descriptor, ignore_override),
LifecycleNode.trigger_*; message_filters.Subscriber(node, msg_type, topic, **kwargs) and
ApproximateTimeSynchronizer(fs, queue_size, slop, allow_headerless=False)).

Where real rclpy behaves in a way that can hide or reveal a bug, the double does the same, so that a test
passing here would pass on real rclpy:
* entities live in private lists (``_publishers``, ``_subscriptions``, ``_services``, ``_timers``) behind
  read-only properties: a subclass attribute of the same name breaks ``create_*`` as it does in rclpy;
* an exception raised by a transition callback is swallowed: the transition returns ERROR, ``on_error`` runs
  and the node ends unconfigured (on_error SUCCESS) or finalized; nothing is logged;
* parameter descriptors are enforced at ``declare_parameter`` (raising InvalidParameterTypeException /
  InvalidParameterValueException) and at every set (type, range and step, read-only), before the node's
  callback runs, with rclpy's reasons;
* message_filters' ApproximateTimeSynchronizer pairs stamps whose spread is strictly below the slop.

Message classes are generated from the rosbags Jazzy typestore definitions (plus gmos_msgs from the
package's own definitions) and behave like rclpy's generated classes where it matters for catching bugs:
keyword-only construction with defaults, unknown fields refused, ``uint8[]`` stored as ``array.array('B')``
(numpy arrays refused, as rclpy's setters do), ``byte`` fields need ``bytes`` of length 1, numbers
type-checked. Only the tests import this module; the package never does.
"""
from __future__ import annotations

import array
import enum
import itertools
import sys
import threading
import types
from typing import Any, Callable, Optional

import numpy as np

# ------------------------------------------------------------------------------------------ messages

_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "char"}
_FLOAT_TYPES = {"float32", "float64"}


def _message_classes(typestore: Any) -> dict[str, type]:
    """rclpy-like classes for every type in the store, keyed by 'pkg/msg/Name'."""
    from rosbags.interfaces import Nodetype

    classes: dict[str, type] = {}

    def field_default(desc):
        kind, detail = desc
        if kind == Nodetype.BASE:
            name = detail[0]
            return {"bool": False, "string": "", "byte": b"\x00"}.get(name, 0.0 if name in _FLOAT_TYPES else 0)
        if kind == Nodetype.NAME:
            return lambda: build(detail)()
        element, length = detail
        if element[0] == Nodetype.BASE and element[1][0] in ("uint8", "byte", "char"):
            return (lambda n=length: array.array("B", bytes(n))) if kind == Nodetype.ARRAY else (
                lambda: array.array("B"))
        if element[0] == Nodetype.BASE and element[1][0] in _FLOAT_TYPES:
            return (lambda n=length: array.array("d", [0.0] * n)) if kind == Nodetype.ARRAY else (
                lambda: array.array("d"))
        if kind == Nodetype.ARRAY and element[0] == Nodetype.NAME:
            return lambda n=length, t=element[1]: [build(t)() for _ in range(n)]
        return list

    def check(typename, name, desc, value):
        kind, detail = desc
        where = f"{typename}.{name}"
        if kind == Nodetype.BASE:
            base = detail[0]
            if base == "bool" and not isinstance(value, bool):
                raise AssertionError(f"{where} must be bool, got {type(value).__name__}")
            if base == "string" and not isinstance(value, str):
                raise AssertionError(f"{where} must be str, got {type(value).__name__}")
            if base == "byte" and not (isinstance(value, bytes) and len(value) == 1):
                raise AssertionError(f"{where} must be bytes of length 1, got {value!r}")
            if base in _INT_TYPES and (not isinstance(value, int) or isinstance(value, bool)):
                raise AssertionError(f"{where} must be int, got {type(value).__name__}")
            if base in _FLOAT_TYPES and not isinstance(value, float):
                raise AssertionError(f"{where} must be float, got {type(value).__name__}")
            return value
        if kind == Nodetype.NAME:
            if type(value).__name__ != detail.split("/")[-1]:
                raise AssertionError(f"{where} must be a {detail}, got {type(value).__name__}")
            return value
        element, _ = detail
        if element[0] == Nodetype.BASE and element[1][0] in ("uint8", "byte", "char"):
            if isinstance(value, np.ndarray):
                raise AssertionError(f"{where}: rclpy does not accept a numpy array for uint8[]; "
                                     "use array.array('B') or bytes")
            if isinstance(value, array.array):
                assert value.typecode == "B", f"{where}: array typecode must be 'B'"
                return value
            return array.array("B", value)
        if element[0] == Nodetype.BASE and element[1][0] in _FLOAT_TYPES:
            return array.array("d", [float(v) for v in value])
        return list(value)

    def build(typename: str) -> type:
        if typename in classes:
            return classes[typename]
        consts, fields = typestore.fielddefs[typename]
        field_names = [n for n, _ in fields]
        descs = dict(fields)

        def __init__(self, **kwargs):
            unknown = set(kwargs) - set(field_names)
            if unknown:
                raise AssertionError(f"Invalid arguments passed to constructor: {sorted(unknown)}")
            for fname in field_names:
                if fname in kwargs:
                    setattr(self, fname, kwargs[fname])
                else:
                    default = field_default(descs[fname])
                    object.__setattr__(self, fname, default() if callable(default) else default)

        def __setattr__(self, fname, value):
            if fname not in descs:
                raise AttributeError(f"{typename} has no field {fname!r}")
            object.__setattr__(self, fname, check(typename, fname, descs[fname], value))

        def __eq__(self, other):
            return type(self) is type(other) and all(getattr(self, f) == getattr(other, f) for f in field_names)

        def __repr__(self):
            return f"{typename.split('/')[-1]}(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in field_names
                                                              if f != "data") + ")"

        namespace = {"__init__": __init__, "__setattr__": __setattr__, "__eq__": __eq__, "__repr__": __repr__,
                     "__hash__": None, "_TYPE": typename,
                     "get_fields_and_field_types": classmethod(lambda cls: {f: "" for f in field_names})}
        for cname, _ctype, cvalue in consts:
            namespace[cname] = cvalue
        cls = type(typename.split("/")[-1], (), namespace)
        classes[typename] = cls
        return cls

    for typename in list(typestore.fielddefs):
        build(typename)
    return classes


def _service_classes() -> dict[str, type]:
    def make(name, request_fields, response_fields):
        def cls_for(fields, label):
            def __init__(self, **kwargs):
                for key, default in fields.items():
                    setattr(self, key, kwargs.pop(key, default))
                if kwargs:
                    raise AssertionError(f"Invalid arguments passed to constructor: {sorted(kwargs)}")
            return type(f"{name}_{label}", (), {"__init__": __init__})
        return type(name, (), {"Request": cls_for(request_fields, "Request"),
                               "Response": cls_for(response_fields, "Response")})
    return {
        "std_srvs/srv/SetBool": make("SetBool", {"data": False}, {"success": False, "message": ""}),
        "std_srvs/srv/Trigger": make("Trigger", {}, {"success": False, "message": ""}),
    }


# ------------------------------------------------------------------------------------------ rclpy

class ReliabilityPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2


class HistoryPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2


class DurabilityPolicy(enum.IntEnum):
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2


class QoSProfile:
    def __init__(self, **kwargs: Any):
        if "history" not in kwargs and "depth" not in kwargs:
            raise TypeError("QoSProfile requires either 'history' or 'depth' to be specified")
        self.reliability = kwargs.pop("reliability", ReliabilityPolicy.RELIABLE)
        self.history = kwargs.pop("history", HistoryPolicy.KEEP_LAST)
        self.depth = kwargs.pop("depth", 10)
        self.durability = kwargs.pop("durability", DurabilityPolicy.VOLATILE)
        if kwargs:
            raise TypeError(f"unexpected QoSProfile arguments {sorted(kwargs)}")


def _as_qos(qos: Any) -> QoSProfile:
    if isinstance(qos, int):
        return QoSProfile(depth=qos)
    assert isinstance(qos, QoSProfile), f"qos_profile must be a QoSProfile or an int, got {qos!r}"
    return qos


class TransitionCallbackReturn(enum.IntEnum):
    SUCCESS = 97
    FAILURE = 98
    ERROR = 99


class State:
    def __init__(self, state_id: int, label: str):
        self.state_id, self.label = state_id, label


class Time:
    def __init__(self, nanoseconds: int):
        self.nanoseconds = int(nanoseconds)


class Clock:
    """ROS clock: sim time when the node's use_sim_time is true (tests set it with set_sim_time)."""

    def __init__(self):
        self.sim_time_ns: Optional[int] = None
        self.wall = __import__("time").time_ns

    def now(self) -> Time:
        return Time(self.sim_time_ns if self.sim_time_ns is not None else self.wall())


class Logger:
    def __init__(self, name: str):
        self.name = name
        self.records: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _log(self, level: str, message: str) -> bool:
        with self._lock:
            self.records.append((level, message))
        return True

    def debug(self, message: str, **kwargs: Any) -> bool:
        return self._log("debug", message)

    def info(self, message: str, **kwargs: Any) -> bool:
        return self._log("info", message)

    def warning(self, message: str, **kwargs: Any) -> bool:
        return self._log("warning", message)

    warn = warning

    def error(self, message: str, **kwargs: Any) -> bool:
        return self._log("error", message)

    def messages(self, level: str) -> list[str]:
        with self._lock:
            return [m for lv, m in self.records if lv == level]


class Parameter:
    def __init__(self, name: str, value: Any):
        self.name, self.value = name, value


class Publisher:
    def __init__(self, node: "Node", msg_type: type, topic: str, qos: QoSProfile):
        self.node, self.msg_type, self.topic_name, self.qos = node, msg_type, topic, qos
        self.published: list[Any] = []
        self.subscription_count = 0  # tests set this to simulate subscribers (lazy debug image)
        self._lock = threading.Lock()

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"publisher on {self.topic_name!r} expects {self.msg_type.__name__}, "
                            f"got {type(msg).__name__}")
        with self._lock:
            self.published.append(msg)

    def get_subscription_count(self) -> int:
        return self.subscription_count


class Subscription:
    def __init__(self, msg_type: type, topic: str, callback: Callable, qos: QoSProfile, event_callbacks: Any = None):
        self.msg_type, self.topic_name, self.callback, self.qos = msg_type, topic, callback, qos
        self.event_callbacks = event_callbacks


class SubscriptionEventCallbacks:
    """rclpy.event_handler.SubscriptionEventCallbacks (rclpy.qos_event on Humble): keyword callbacks."""

    def __init__(self, *, deadline: Any = None, incompatible_qos: Any = None, liveliness: Any = None,
                 message_lost: Any = None, incompatible_type: Any = None, matched: Any = None,
                 use_default_callbacks: bool = True):
        self.deadline, self.incompatible_qos, self.liveliness = deadline, incompatible_qos, liveliness
        self.message_lost, self.incompatible_type, self.matched = message_lost, incompatible_type, matched


class QoSRequestedIncompatibleQoSInfo:
    def __init__(self, total_count: int, total_count_change: int, last_policy_kind: int):
        self.total_count, self.total_count_change, self.last_policy_kind = (total_count, total_count_change,
                                                                            last_policy_kind)


class Service:
    def __init__(self, srv_type: type, name: str, callback: Callable):
        self.srv_type, self.srv_name, self.callback = srv_type, name, callback

    def call(self, request: Any) -> Any:
        return self.callback(request, self.srv_type.Response())


class Timer:
    def __init__(self, period: float, callback: Callable):
        self.timer_period_ns, self.callback = int(period * 1e9), callback

    def fire(self) -> None:
        self.callback()


class ParameterException(Exception):
    pass


class InvalidParameterTypeException(ParameterException):
    """rclpy.exceptions.InvalidParameterTypeException (same message)."""

    def __init__(self, parameter: "Parameter", expected: str):
        super().__init__(f"Trying to set parameter '{parameter.name}' to '{parameter.value}' of type "
                         f"'{_parameter_type(parameter.value)}', expecting type '{expected}'")


class InvalidParameterValueException(ParameterException):
    """rclpy.exceptions.InvalidParameterValueException (same message)."""

    def __init__(self, name: str, value: Any, reason: str):
        super().__init__(f"Invalid parameter value ({value}) for parameter. Reason: {reason}")


def _parameter_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    return "NOT_SET" if value is None else "BYTE_ARRAY"


def _descriptor_problem(name: str, value: Any, declared_type: str, descriptor: Any) -> Optional[str]:
    """The reason rclpy gives for refusing ``value`` (None if accepted): type, then range and step."""
    if descriptor is None:
        return None
    if _parameter_type(value) != declared_type:
        return f"Wrong parameter type, expected 'Type.{declared_type}' got 'Type.{_parameter_type(value)}'"
    for ranges, tolerance in ((descriptor.integer_range, 0), (descriptor.floating_point_range, 1e-9)):
        if not ranges:
            continue
        r = ranges[0]
        if not (r.from_value - tolerance <= value <= r.to_value + tolerance):
            return f"Parameter {name} out of range. Min: {r.from_value}, Max: {r.to_value}, value: {value}"
        if r.step and value != r.to_value:
            steps = (value - r.from_value) / r.step
            if abs(steps - round(steps)) > tolerance:
                return (f"The parameter value for {name} is not a valid step. Min: {r.from_value}, max: "
                        f"{r.to_value}, value: {value}, step: {r.step}")
    return None


class Context:
    def ok(self) -> bool:
        return _STATE["init"]


class Node:
    def __init__(self, node_name: str, *, context: Any = None, cli_args: Any = None, namespace: str = "",
                 use_global_arguments: bool = True, enable_rosout: bool = True, start_parameter_services: bool = True,
                 parameter_overrides: Optional[list[Parameter]] = None, allow_undeclared_parameters: bool = False,
                 automatically_declare_parameters_from_overrides: bool = False):
        if not _STATE["init"]:
            raise RuntimeError("Failed to create node: rcl_init not called (rclpy.init() first)")
        self._name = node_name
        self._context = Context()
        self._parameter_overrides = {p.name: p for p in (parameter_overrides or [])}
        self._parameters: dict[str, Parameter] = {}
        self._parameter_types: dict[str, str] = {}
        self._descriptors: dict[str, Any] = {}
        self._logger = Logger(node_name)
        self._clock = Clock()
        # rclpy keeps its entities in these private lists (the node must not shadow them)
        self._publishers: list[Publisher] = []
        self._subscriptions: list[Subscription] = []
        self._services: list[Service] = []
        self._timers: list[Timer] = []
        self._clients: list[Any] = []
        self._guards: list[Any] = []
        self._on_set_parameters_callbacks: list[Callable] = []
        self.declare_parameter("use_sim_time", False)

    @property
    def context(self) -> Context:
        return self._context

    @property
    def publishers(self):
        yield from self._publishers

    @property
    def subscriptions(self):
        yield from self._subscriptions

    @property
    def services(self):
        yield from self._services

    @property
    def timers(self):
        yield from self._timers

    @property
    def descriptors(self) -> dict[str, Any]:
        return dict(self._descriptors)

    def get_name(self) -> str:
        return self._name

    def declare_parameter(self, name: str, value: Any = None, descriptor: Any = None,
                          ignore_override: bool = False) -> Parameter:
        """rclpy: the override (params file, -p) replaces the default, then the descriptor is enforced."""
        if name in self._parameters:
            raise ParameterException(f"ParameterAlreadyDeclaredException: {name}")
        declared_type = _parameter_type(value)
        if not ignore_override and name in self._parameter_overrides:
            value = self._parameter_overrides[name].value
        problem = _descriptor_problem(name, value, declared_type, descriptor)
        if problem is not None:
            if problem.startswith("Wrong parameter type"):
                raise InvalidParameterTypeException(Parameter(name, value), declared_type)
            raise InvalidParameterValueException(name, value, problem)
        self._parameters[name] = Parameter(name, value)
        self._parameter_types[name] = declared_type
        self._descriptors[name] = descriptor
        return self._parameters[name]

    def get_parameter(self, name: str) -> Parameter:
        if name not in self._parameters:
            raise ParameterException(f"ParameterNotDeclaredException: {name}")
        return self._parameters[name]

    def get_logger(self) -> Logger:
        return self._logger

    def add_on_set_parameters_callback(self, callback: Callable) -> None:
        self._on_set_parameters_callbacks.insert(0, callback)

    def set_parameters(self, parameter_list: list[Parameter]) -> list[Any]:
        """rclpy: read-only, type, range and step are checked before the node's callbacks see a parameter."""
        results = []
        result_type = sys.modules["rcl_interfaces.msg"].SetParametersResult
        for parameter in parameter_list:
            descriptor = self._descriptors.get(parameter.name)
            if descriptor is not None and descriptor.read_only:
                results.append(result_type(successful=False, reason=f"Trying to set a read-only parameter: "
                                                                    f"{parameter.name}."))
                continue
            problem = _descriptor_problem(parameter.name, parameter.value,
                                          self._parameter_types.get(parameter.name, "NOT_SET"), descriptor)
            if problem is not None:
                results.append(result_type(successful=False, reason=problem))
                continue
            result = result_type(successful=True, reason="")
            for callback in self._on_set_parameters_callbacks:
                result = callback([parameter])
                if not result.successful:
                    break
            if result.successful:
                self._parameters[parameter.name] = Parameter(parameter.name, parameter.value)
            results.append(result)
        return results

    def get_clock(self) -> Clock:
        return self._clock

    def set_sim_time(self, stamp_ns: int) -> None:
        """What a /clock message does to a node with use_sim_time:=true."""
        assert self.get_parameter("use_sim_time").value, "sim time needs use_sim_time:=true"
        self._clock.sim_time_ns = int(stamp_ns)

    def create_publisher(self, msg_type: type, topic: str, qos_profile: Any, *, callback_group: Any = None,
                         event_callbacks: Any = None, qos_overriding_options: Any = None,
                         publisher_class: Any = None) -> Publisher:
        pub = Publisher(self, msg_type, topic, _as_qos(qos_profile))
        self._publishers.append(pub)
        return pub

    def create_subscription(self, msg_type: type, topic: str, callback: Callable, qos_profile: Any, *,
                            callback_group: Any = None, event_callbacks: Any = None,
                            qos_overriding_options: Any = None, raw: bool = False) -> Subscription:
        sub = Subscription(msg_type, topic, callback, _as_qos(qos_profile), event_callbacks)
        self._subscriptions.append(sub)
        return sub

    def create_service(self, srv_type: type, srv_name: str, callback: Callable, *, qos_profile: Any = None,
                       callback_group: Any = None) -> Service:
        srv = Service(srv_type, srv_name, callback)
        self._services.append(srv)
        return srv

    def create_timer(self, timer_period_sec: float, callback: Callable, callback_group: Any = None,
                     clock: Any = None) -> Timer:
        timer = Timer(timer_period_sec, callback)
        self._timers.append(timer)
        return timer

    def destroy_publisher(self, publisher: Publisher) -> bool:
        if publisher not in self._publishers:
            return False
        self._publishers.remove(publisher)
        return True

    def destroy_subscription(self, subscription: Subscription) -> bool:
        if subscription not in self._subscriptions:
            return False
        self._subscriptions.remove(subscription)
        return True

    def destroy_service(self, service: Service) -> bool:
        if service not in self._services:
            return False
        self._services.remove(service)
        return True

    def destroy_timer(self, timer: Timer) -> bool:
        if timer not in self._timers:
            return False
        self._timers.remove(timer)
        return True

    def destroy_node(self) -> None:
        self.destroyed = True

    # ---- test helpers (not rclpy API)
    def publisher(self, topic: str) -> Publisher:
        return next(p for p in self._publishers if p.topic_name == topic)

    def deliver(self, topic: str, msg: Any) -> None:
        """What the executor does when a message arrives on a subscribed topic."""
        matched = [s for s in self._subscriptions if s.topic_name == topic]
        assert matched, f"nothing subscribes to {topic!r}; subscribed: {[s.topic_name for s in self._subscriptions]}"
        for sub in matched:
            assert isinstance(msg, sub.msg_type), f"{topic!r} expects {sub.msg_type.__name__}"
            sub.callback(msg)

    def service(self, name: str) -> Service:
        return next(s for s in self._services if s.srv_name == name)


class LifecycleNode(Node):
    """rclpy.lifecycle.LifecycleNode: on_* callbacks driven by trigger_* (unconfigured/inactive/active/finalized).

    As rclpy: SUCCESS moves on, FAILURE goes back, an exception in the callback is swallowed and becomes
    ERROR, after which on_error decides (SUCCESS: unconfigured, otherwise finalized).
    """

    def __init__(self, node_name: str, *, enable_communication_interface: bool = True, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.lifecycle_state = "unconfigured"

    def _run(self, callback: str) -> TransitionCallbackReturn:
        try:
            return getattr(self, callback)(State(0, self.lifecycle_state))
        except Exception:  # rclpy: "TODO(ivanpauno): log sth here"
            return TransitionCallbackReturn.ERROR

    def _trigger(self, callback: str, allowed_from: tuple[str, ...], success_state: str,
                 failure_state: str) -> TransitionCallbackReturn:
        if self.lifecycle_state not in allowed_from:
            raise RuntimeError(f"Failed to trigger lifecycle state machine transition: {callback} from "
                               f"{self.lifecycle_state}")
        result = self._run(callback)
        if result == TransitionCallbackReturn.ERROR:
            recovered = self._run("on_error") == TransitionCallbackReturn.SUCCESS
            self.lifecycle_state = "unconfigured" if recovered else "finalized"
        else:
            self.lifecycle_state = success_state if result == TransitionCallbackReturn.SUCCESS else failure_state
        return result

    def trigger_configure(self):
        return self._trigger("on_configure", ("unconfigured",), "inactive", "unconfigured")

    def trigger_activate(self):
        return self._trigger("on_activate", ("inactive",), "active", "inactive")

    def trigger_deactivate(self):
        return self._trigger("on_deactivate", ("active",), "inactive", "active")

    def trigger_cleanup(self):
        return self._trigger("on_cleanup", ("inactive",), "unconfigured", "inactive")

    def trigger_shutdown(self):
        return self._trigger("on_shutdown", ("unconfigured", "inactive", "active"), "finalized", "finalized")

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    on_activate = on_deactivate = on_cleanup = on_shutdown = on_configure

    def on_error(self, state: State) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.FAILURE  # rclpy's default: the node ends finalized


# ------------------------------------------------------------------------------------------ message_filters

class FilterSubscriber:
    """message_filters.Subscriber(node, msg_type, topic, **kwargs): kwargs go to create_subscription."""

    def __init__(self, node: Node, msg_type: type, topic: str, **kwargs: Any):
        self.node, self.topic = node, topic
        self._callbacks: list[Callable] = []
        self.sub = node.create_subscription(msg_type, topic, self._signal, **kwargs)

    def registerCallback(self, callback: Callable, *args: Any) -> None:
        self._callbacks.append(lambda msg: callback(msg, *args))

    def _signal(self, msg: Any) -> None:
        for cb in self._callbacks:
            cb(msg)


class ApproximateTimeSynchronizer:
    """Emits one message per input whose stamps spread strictly less than ``slop`` (closest match wins)."""

    def __init__(self, fs: list, queue_size: int, slop: float, allow_headerless: bool = False):
        self.queue_size, self.slop_ns = queue_size, int(slop * 1e9)
        self.queues: list[dict[int, Any]] = [{} for _ in fs]
        self._callbacks: list[Callable] = []
        self._lock = threading.Lock()
        for index, f in enumerate(fs):
            f.registerCallback(self._add, index)

    def registerCallback(self, callback: Callable, *args: Any) -> None:
        self._callbacks.append(lambda *msgs: callback(*(msgs + args)))

    def _add(self, msg: Any, index: int) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            queue = self.queues[index]
            queue[stamp] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
            candidates = []
            for other_index, other in enumerate(self.queues):
                if other_index == index:
                    candidates.append([stamp])
                    continue
                near = sorted((s for s in other if abs(s - stamp) <= self.slop_ns), key=lambda s: abs(s - stamp))
                if not near:
                    return
                candidates.append(near)
            for combo in itertools.product(*candidates):
                if max(combo) - min(combo) < self.slop_ns:  # message_filters: strictly below the slop
                    msgs = tuple(q.pop(s) for q, s in zip(self.queues, combo))
                    break
            else:
                return
        for cb in self._callbacks:
            cb(*msgs)


# ------------------------------------------------------------------------------------------ installation

_STATE = {"init": False}


def _init(args: Any = None, *, context: Any = None, domain_id: Any = None, signal_handler_options: Any = None):
    _STATE["init"] = True


def _try_shutdown(*, context: Any = None, uninstall_handlers: Any = None):
    _STATE["init"] = False


class ExternalShutdownException(Exception):
    """rclpy.executors.ExternalShutdownException: spin's answer to a context shut down by a signal."""


def _spin(node: Node, executor: Any = None) -> None:
    raise _STATE.get("spin_raises", KeyboardInterrupt)()  # no executor: main() returns at once


class SingleThreadedExecutor:
    """rclpy.executors.SingleThreadedExecutor (Humble has the same methods): add_node / remove_node /
    spin_once(timeout_sec) / shutdown(timeout_sec). There are no callbacks to run here: the first spin_once
    raises what a signal would make rclpy's raise (``spin_raises``: KeyboardInterrupt for Ctrl-C,
    ExternalShutdownException for SIGTERM), so main() returns at once."""

    def __init__(self, *, context: Any = None) -> None:
        self._nodes: list = []
        self._shutdown = False

    def add_node(self, node: Node) -> bool:
        if self._shutdown:
            raise RuntimeError("executor is shut down")  # rclpy: adding to a shut-down executor fails
        if node in self._nodes:
            return False
        self._nodes.append(node)
        return True

    def remove_node(self, node: Node) -> None:
        if node in self._nodes:
            self._nodes.remove(node)

    def spin_once(self, timeout_sec: Any = None) -> None:
        if timeout_sec is not None and not isinstance(timeout_sec, (int, float)):
            raise TypeError(f"timeout_sec must be a number or None, got {type(timeout_sec).__name__}")
        if not self._nodes:
            raise AssertionError("spin_once on an executor without nodes: nothing would ever run")
        raise _STATE.get("spin_raises", KeyboardInterrupt)()

    def shutdown(self, timeout_sec: Any = None) -> bool:
        self._shutdown = True
        return True


def build_modules() -> dict[str, types.ModuleType]:
    """The fake rclpy world as {module name: module} (install with monkeypatch.setitem(sys.modules, ...))."""
    from rosbags.typesys import Stores, get_typestore

    from gmos_core.bridge.interfaces import register_gmos_types

    store = register_gmos_types(get_typestore(Stores.ROS2_JAZZY))
    classes = _message_classes(store)
    services = _service_classes()
    modules: dict[str, types.ModuleType] = {}

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules.setdefault(parent, types.ModuleType(parent)), child, mod)
        return mod

    for typename, cls in classes.items():
        package, kind, name = typename.split("/")
        mod = modules.get(f"{package}.{kind}") or module(f"{package}.{kind}")
        setattr(mod, name, cls)
        modules.setdefault(package, types.ModuleType(package))
        setattr(modules[package], kind, mod)
    for typename, cls in services.items():
        package, kind, name = typename.split("/")
        mod = modules.get(f"{package}.{kind}") or module(f"{package}.{kind}")
        setattr(mod, name, cls)
        modules.setdefault(package, types.ModuleType(package))
        setattr(modules[package], kind, mod)
    modules["rcl_interfaces.msg"] = module(
        "rcl_interfaces.msg",
        ParameterDescriptor=_simple("ParameterDescriptor", name="", type=0, description="",
                                    additional_constraints="", read_only=False, dynamic_typing=False,
                                    floating_point_range=list, integer_range=list),
        FloatingPointRange=_simple("FloatingPointRange", from_value=0.0, to_value=0.0, step=0.0),
        IntegerRange=_simple("IntegerRange", from_value=0, to_value=0, step=0),
        SetParametersResult=_simple("SetParametersResult", successful=False, reason=""),
    )
    modules.setdefault("rcl_interfaces", types.ModuleType("rcl_interfaces")).msg = modules["rcl_interfaces.msg"]
    rclpy = module("rclpy", init=_init, try_shutdown=_try_shutdown, spin=_spin, ok=lambda: _STATE["init"])
    module("rclpy.node", Node=Node)
    module("rclpy.lifecycle", LifecycleNode=LifecycleNode, State=State,
           TransitionCallbackReturn=TransitionCallbackReturn)
    # Humble: the event callbacks live in rclpy.qos_event (rclpy.event_handler arrived in Iron)
    module("rclpy.qos_event", SubscriptionEventCallbacks=SubscriptionEventCallbacks,
           QoSRequestedIncompatibleQoSInfo=QoSRequestedIncompatibleQoSInfo)
    modules["rclpy.event_handler"] = None  # `import rclpy.event_handler` raises ImportError, as on Humble
    module("rclpy.exceptions", ParameterException=ParameterException,
           InvalidParameterTypeException=InvalidParameterTypeException,
           InvalidParameterValueException=InvalidParameterValueException)
    module("rclpy.executors", ExternalShutdownException=ExternalShutdownException,
           SingleThreadedExecutor=SingleThreadedExecutor)
    module("rclpy.qos", QoSProfile=QoSProfile, ReliabilityPolicy=ReliabilityPolicy, HistoryPolicy=HistoryPolicy,
           DurabilityPolicy=DurabilityPolicy)
    rclpy.node, rclpy.lifecycle, rclpy.qos = modules["rclpy.node"], modules["rclpy.lifecycle"], modules["rclpy.qos"]
    module("message_filters", Subscriber=FilterSubscriber, ApproximateTimeSynchronizer=ApproximateTimeSynchronizer)
    modules["cv_bridge"] = None  # `import cv_bridge` raises ImportError: the numpy path is used
    return modules


def _simple(class_name: str, **defaults: Any) -> type:
    def __init__(self, **kwargs: Any):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise AssertionError(f"Invalid arguments passed to constructor: {sorted(unknown)}")
        for key, default in defaults.items():
            value = kwargs.get(key, default() if callable(default) else default)
            setattr(self, key, value)
    return type(class_name, (), {"__init__": __init__})


def install(monkeypatch: Any) -> dict[str, types.ModuleType]:
    """Put the double in sys.modules (undone by monkeypatch) and drop any cached gmos_ros.node."""
    modules = build_modules()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "gmos_ros.node", raising=False)
    return modules
