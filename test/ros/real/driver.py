"""Drives the GMOS node on a real ROS 2 (run by test_real_ros.py inside the kit's venv, never by pytest).

    python driver.py SCENARIO OUT_DIR VIDEO

Starts the node as a real process (``ros2 launch gmos_ros gmos.launch.py`` or ``ros2 run``), talks to it
over real DDS from an rclpy node of its own (publishers, subscriptions, lifecycle / parameter / std_srvs
service clients, the ``ros2`` CLI), stops it as a user would (Ctrl-C to the process group, or SIGTERM),
and writes what it observed to OUT_DIR/result.json (+ arrays in OUT_DIR/arrays.npz). The assertions live
in test_real_ros.py, so a failure names what was wrong.

Scenarios (grouped so that the tier starts few processes):
  stream    launch; camera_info + depth synchronised through message_filters; reliable image QoS; a
            best-effort publisher (incompatible: the node warns); mask_threshold changed through the
            parameter service and `ros2 param set`; read-only and out-of-range sets refused; wrong encoding;
            enable and reset_window; lifecycle deactivate/activate/cleanup/shutdown through the services
            and `ros2 lifecycle get`; Ctrl-C.
  simtime   launch with use_sim_time:=true and a /clock publisher; compressed (PNG) input; the default
            (SENSOR_DATA) profile fed by a reliable and a best-effort publisher; the node stopped with SIGTERM.
  failures  ros2 run with a missing weight file (activate fails, says why, leaves no engine; cleanup and
            configure again create each publisher once) and, alongside, a node whose params have a wrongly
            typed and an out-of-range value (one line each, stays unconfigured).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import DescribeParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool, Trigger

from gmos_msgs.msg import MovingObjectArray

HEIGHT, WIDTH = 48, 64
PERIOD_NS = 125_000_000  # 8 Hz stamps
T0 = 1_700_000_000 * 10**9
LOOKAHEAD = 2  # gmos_s, window 5 centred, stride 1 (fps 8): an output needs the 2 frames after it
TINY = ["tiny_random_model:=true", "device:=cpu", "precision:=fp32", "mode:=gmos_s"]
OUTPUTS = {"objects": MovingObjectArray, "dynamic_mask": Image, "dynamic_mask/camera_info": CameraInfo,
           "instance_mask": Image, "masked_depth": Image}
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def video_frames(path: str, count: int, every: int = 3, size: tuple[int, int] = (WIDTH, HEIGHT)) -> list[np.ndarray]:
    """``count`` frames of a real video, every ``every``-th one, downscaled to ``size`` (width, height)."""
    import av

    frames = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))
            if len(frames) == count:
                break
    return frames


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def make_header(ns: int, frame_id: str = "camera_color_optical_frame") -> Header:
    return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame_id)


def image_msg(rgb: np.ndarray, ns: int, encoding: str = "rgb8") -> Image:
    return Image(header=make_header(ns), height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                 is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.tobytes())


def compressed_msg(rgb: np.ndarray, ns: int) -> CompressedImage:
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return CompressedImage(header=make_header(ns), format="rgb8; png compressed", data=buffer.getvalue())


def depth_msg(ns: int, index: int) -> tuple[Image, np.ndarray]:
    """A registered 16UC1 depth (millimetres), non-zero everywhere and different at every pixel and frame."""
    mm = (1000 + np.arange(HEIGHT * WIDTH, dtype=np.uint16).reshape(HEIGHT, WIDTH) + 7 * index).astype(np.uint16)
    return Image(header=make_header(ns), height=HEIGHT, width=WIDTH, encoding="16UC1", is_bigendian=0,
                 step=WIDTH * 2, data=mm.tobytes()), mm


def info_msg(ns: int) -> CameraInfo:
    return CameraInfo(header=make_header(ns), height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                      k=[50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0])


class NodeProcess:
    """A node started as its own process group (so Ctrl-C reaches it as from a terminal)."""

    def __init__(self, cmd: list[str], log: Path, env: dict):
        self.log_path = log
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.text()):
                return True
            if self.proc.poll() is not None:
                return bool(re.search(pattern, self.text()))
            time.sleep(0.1)
        return False

    def node_pid(self) -> int:
        """The node's pid: `ros2 launch` prints it; under `ros2 run` it is the run process's descendant whose
        command line names the node's executable (not simply the first child: the run process can have others,
        and the signal must reach the node itself)."""
        match = re.search(r"gmos_node-1\]: process started with pid \[(\d+)\]", self.text())
        if match:
            return int(match.group(1))
        pending, found = [self.proc.pid], []
        while pending:
            parent = pending.pop()
            children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
            for child in map(int, children):
                pending.append(child)
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if "gmos_node" in cmdline and "ros2 run" not in cmdline and " run gmos_ros" not in cmdline:
                    found.append(child)
        return found[0] if found else self.proc.pid

    def stop(self, sig: int, group: bool = True, timeout: float = 30.0) -> dict:
        """``group``: to the process group, as Ctrl-C in a terminal; otherwise to the node process alone."""
        started = time.monotonic()
        target = None
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            target = self.node_pid()
            os.kill(target, sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = "killed after timeout"
            if target is not None:  # where the node's threads wait (kernel wait channels), for the report
                threads = []
                for task in sorted(Path(f"/proc/{target}/task").glob("*")):
                    try:
                        threads.append(f"{(task / 'comm').read_text().strip()}:{(task / 'wchan').read_text()}")
                    except OSError:
                        pass
                rc += f" (node threads: {', '.join(threads)})"
            os.killpg(self.proc.pid, signal.SIGKILL)
        return {"rc": rc, "stop_s": round(time.monotonic() - started, 2), "log": self.text(), "signalled": target,
                "run_pid": self.proc.pid}

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Harness:
    """An rclpy node of the test, spun in a background thread, with recorders and service helpers."""

    def __init__(self, node_ns: str):
        self.node = Node("gmos_real_ros_driver")
        self.ns = node_ns
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.lock = threading.Lock()
        self.received: dict[str, list] = defaultdict(list)
        self.clients: dict[str, object] = {}

    def record(self, topic: str, msg_type, qos=RELIABLE) -> None:
        def callback(msg, topic=topic):
            with self.lock:
                self.received[topic].append(msg)

        self.node.create_subscription(msg_type, topic, callback, qos)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.received[topic])

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def call(self, srv_type, name: str, request, timeout: float = 60.0):
        client = self.clients.get(name)
        if client is None:
            client = self.clients[name] = self.node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"service {name} did not appear within {timeout} s")
        future = client.call_async(request)
        end = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > end:
                raise RuntimeError(f"service {name} did not answer within {timeout} s")
            time.sleep(0.01)
        return future.result()

    # lifecycle
    def state(self) -> str:
        return self.call(GetState, f"{self.ns}/get_state", GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return bool(self.call(ChangeState, f"{self.ns}/change_state", request, timeout=120.0).success)

    def wait_state(self, label: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < end:
            try:
                state = self.state()
            except RuntimeError:
                state = "no service"
            if state == label:
                return state
            time.sleep(0.2)
        return state

    def set_param(self, name: str, value) -> dict:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (result,) = self.call(SetParameters, f"{self.ns}/set_parameters", request).results
        return {"successful": bool(result.successful), "reason": result.reason}

    def diagnostics(self) -> dict:
        msgs = self.messages("/diagnostics")
        if not msgs:
            return {}
        status = msgs[-1].status[0]
        return {"stamp_ns": stamp_ns(msgs[-1].header), "message": status.message,
                **{kv.key: kv.value for kv in status.values}}

    def wait(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def ros2_cli(*args: str, timeout: float = 60.0) -> dict:
    """A `ros2` command without the daemon (it would outlive the test). Discovery can take seconds on a
    loaded machine: 3 s of spin time, and a second try if the node was not discovered."""
    for _ in range(2):
        proc = subprocess.run(["ros2", *args, "--no-daemon", "--spin-time", "3"], capture_output=True, text=True,
                              timeout=timeout)
        if "Node not found" not in proc.stdout + proc.stderr:
            break
    return {"rc": proc.returncode, "out": proc.stdout.strip(), "err": proc.stderr.strip()}


def counters_consistent(d: dict) -> bool:
    """Every frame the node received is accounted for: output, skipped, dropped, refused or ignored."""
    if not d:
        return False
    accounted = sum(int(d[k]) for k in ("frames_segmented", "frames_skipped", "frames_dropped", "frames_rejected",
                                        "frames_ignored_disabled", "frames_duplicate"))
    return accounted == int(d["frames_received"]) and d.get("queue_frames") == "0"


# ---------------------------------------------------------------------------------------------- stream
def scenario_stream(out: Path, video: str, env: dict, result: dict) -> dict:
    ns = "/gmos/gmos_node"
    (out / "stream.yaml").write_text(
        "/**:\n  ros__parameters:\n    fps: 8.0\n    pixel_limit: 2352\n    use_camera_info: true\n"
        "    use_depth: true\n    image_qos: RELIABLE\n    image_qos_depth: 10\n    sync_slop_s: 0.01\n"
        "    diagnostics_period_s: 0.5\n"
        # never skip or drop here (a loaded machine would otherwise skip windows): every frame is output, so
        # each output can be matched to the threshold in force when it was built
        "    max_queue_frames: 100\n    skip_backlog_frames: 100\n")
    node = NodeProcess(["ros2", "launch", "gmos_ros", "gmos.launch.py", *TINY,
                        f"params_file:={out / 'stream.yaml'}", "image_topic:=/cam/image",
                        "camera_info_topic:=/cam/info", "depth_topic:=/cam/depth"], out / "stream.log", env)
    h = Harness(ns)
    arrays: dict[str, np.ndarray] = {}
    try:
        for topic, msg_type in OUTPUTS.items():
            h.record(f"/gmos/{topic}", msg_type)
        h.record("/diagnostics", DiagnosticArray, 50)
        result["state_at_start"] = h.wait_state("active", 120.0)
        result["startup_s"] = round(time.monotonic() - node.started, 1)
        result["cli_lifecycle_get"] = ros2_cli("lifecycle", "get", ns)
        from gmos_core.bridge.params import PARAMETER_SPECS

        described = h.call(DescribeParameters, f"{ns}/describe_parameters",
                           DescribeParameters.Request(names=[spec.name for spec in PARAMETER_SPECS])).descriptors
        result["descriptors"] = {
            d.name: {"type": d.type, "description": d.description, "read_only": d.read_only,
                     "additional_constraints": d.additional_constraints,
                     "range": [[r.from_value, r.to_value, r.step] for r in (*d.integer_range, *d.floating_point_range)]}
            for d in described}

        image_pub = h.node.create_publisher(Image, "/cam/image", RELIABLE)
        info_pub = h.node.create_publisher(CameraInfo, "/cam/info", RELIABLE)
        depth_pub = h.node.create_publisher(Image, "/cam/depth", RELIABLE)
        # a best-effort camera cannot reach a reliable subscription: the node must say so
        h.node.create_publisher(Image, "/cam/image", qos_profile_sensor_data)
        result["incompatible_warned"] = node.wait_log(r"offers a QoS incompatible", 20.0)
        h.wait(lambda: image_pub.get_subscription_count() >= 1 and depth_pub.get_subscription_count() >= 1, 20.0)

        frames = video_frames(video, 12)
        sent_headers: list[list] = []
        depths: dict[int, np.ndarray] = {}
        phase_of_output: dict[int, float] = {}

        def send(index: int, encoding: str = "rgb8", expect_output: bool = True) -> int:
            ns_ = T0 + index * PERIOD_NS
            depth, mm = depth_msg(ns_, index)
            depths[ns_] = mm
            # depth and camera_info a little earlier or later than the image: the synchroniser pairs by stamp
            info_pub.publish(info_msg(ns_))
            image_pub.publish(image_msg(frames[index % len(frames)], ns_, encoding))
            depth_pub.publish(depth)
            if expect_output:
                sent_headers.append([ns_, "camera_color_optical_frame"])
            return ns_

        def run_phase(threshold: float, indices: list[int], how: str) -> dict:
            if how == "cli":
                answer = ros2_cli("param", "set", ns, "mask_threshold", str(threshold))
                ok = {"successful": answer["rc"] == 0 and "successful" in answer["out"],
                      "reason": answer["out"] + answer["err"]}
            else:
                ok = h.set_param("mask_threshold", threshold)
            for i in indices:
                send(i)
                time.sleep(0.15)
            # The output of frame k is built once frame k + LOOKAHEAD has arrived, i.e. in the phase that sent
            # it, after this phase's threshold was set; wait for all of them before the next phase.
            due = [T0 + (i - LOOKAHEAD) * PERIOD_NS for i in indices if i >= LOOKAHEAD]
            h.wait(lambda: set(due) <= {stamp_ns(m.header) for m in h.messages("/gmos/dynamic_mask")}, 180.0)
            for stamp in due:
                phase_of_output[stamp] = threshold
            return ok

        result["set_threshold_cli_1.0"] = run_phase(1.0, [0, 1, 2, 3], "cli")  # fg_prob > 1: nothing dynamic
        result["set_threshold_0.0"] = run_phase(0.0, [4, 5], "service")       # fg_prob > 0: everything
        # The tiny random model's foreground probability on these frames spans about [0.40, 0.47] (measured);
        # 0.44 splits it: a partly dynamic mask for the masked-depth check.
        result["set_threshold_0.44"] = run_phase(0.44, [6, 7, 8], "service")
        result["set_read_only"] = h.set_param("window_size", 7)
        result["set_out_of_range"] = h.set_param("mask_threshold", 1.5)
        result["set_wrong_type"] = h.set_param("mask_threshold", 1)

        # a wrong encoding: counted and logged, the node goes on
        bad_ns = send(9, encoding="32FC1", expect_output=False)
        result["bad_encoding_logged"] = node.wait_log(r"image encoding '32FC1' is not supported", 20.0)
        send(10)
        time.sleep(0.2)
        send(11)
        time.sleep(0.2)
        reset = h.call(Trigger, "/gmos/reset_window", Trigger.Request())
        result["reset_window"] = {"success": reset.success, "message": reset.message}
        h.wait(lambda: h.count("/gmos/objects") >= len(sent_headers) and counters_consistent(h.diagnostics()), 120.0)
        for msg in h.messages("/gmos/dynamic_mask"):
            phase_of_output.setdefault(stamp_ns(msg.header), 0.44)
        # enable: disabled frames are counted, not processed
        off = h.call(SetBool, "/gmos/enable", SetBool.Request(data=False))
        send(12, expect_output=False)  # frames wraps around the video: index 12 reuses frame 0 with a new stamp
        h.wait(lambda: int(h.diagnostics().get("frames_ignored_disabled", 0)) >= 1, 30.0)
        on = h.call(SetBool, "/gmos/enable", SetBool.Request(data=True))
        result["enable"] = {"off": [off.success, off.message], "on": [on.success, on.message]}
        h.wait(lambda: counters_consistent(h.diagnostics()), 30.0)
        time.sleep(1.2)  # one more diagnostics period
        result["diagnostics"] = h.diagnostics()
        result["sent_images"] = len(sent_headers) + 2  # + the wrong encoding + the disabled one
        result["sent_headers"] = list(sent_headers)
        result["bad_encoding_stamp"] = bad_ns
        result["outputs"] = {topic: [[stamp_ns(m.header), m.header.frame_id] for m in h.messages(f"/gmos/{topic}")]
                             for topic in OUTPUTS}
        result["phase_of_output"] = {str(k): v for k, v in phase_of_output.items()}
        result["dynamic_mask_encoding"] = sorted({m.encoding for m in h.messages("/gmos/dynamic_mask")})
        result["camera_info_out"] = [[m.distortion_model, list(m.k)] for m in
                                     h.messages("/gmos/dynamic_mask/camera_info")[:1]]
        for m in h.messages("/gmos/dynamic_mask"):
            arrays[f"mask_{stamp_ns(m.header)}"] = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width)
        for m in h.messages("/gmos/masked_depth"):
            ts = stamp_ns(m.header)
            arrays[f"masked_{ts}"] = np.frombuffer(bytes(m.data), "<u2").reshape(m.height, m.width)
            arrays[f"depth_{ts}"] = depths[ts]

        # lifecycle through the real services
        steps = {}
        steps["deactivate"] = h.transition(Transition.TRANSITION_DEACTIVATE)
        steps["after_deactivate"] = h.state()
        steps["subscribers_inactive"] = image_pub.get_subscription_count()
        h.wait(lambda: h.diagnostics().get("active") == "False", 10.0)
        steps["diagnostics_active_inactive"] = h.diagnostics().get("active")
        steps["activate"] = h.transition(Transition.TRANSITION_ACTIVATE)
        steps["after_activate"] = h.state()
        h.wait(lambda: image_pub.get_subscription_count() >= 1, 20.0)
        h.record("/gmos/debug_image", Image, qos_profile_sensor_data)  # the overlay is built while watched
        before = h.count("/gmos/objects")
        for i in range(20, 23):
            send(i)
            time.sleep(0.15)
        h.call(Trigger, "/gmos/reset_window", Trigger.Request())
        h.wait(lambda: h.count("/gmos/objects") >= before + 3, 120.0)
        steps["outputs_after_reactivate"] = h.count("/gmos/objects") - before
        h.wait(lambda: h.count("/gmos/debug_image") >= 1, 10.0)
        steps["debug_images"] = [[stamp_ns(m.header), m.encoding, m.height, m.width]
                                 for m in h.messages("/gmos/debug_image")]
        steps["reactivated_stamps"] = [T0 + i * PERIOD_NS for i in range(20, 23)]
        steps["deactivate_again"] = h.transition(Transition.TRANSITION_DEACTIVATE)
        steps["cleanup"] = h.transition(Transition.TRANSITION_CLEANUP)
        steps["after_cleanup"] = h.state()
        h.wait(lambda: h.node.count_publishers("/gmos/objects") == 0, 10.0)
        steps["publishers_after_cleanup"] = h.node.count_publishers("/gmos/objects")
        steps["shutdown"] = h.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        steps["after_shutdown"] = h.state()
        result["lifecycle"] = steps
    finally:
        h.close()
        np.savez(out / "arrays.npz", **arrays)
        result["stop"] = node.stop(signal.SIGINT)  # Ctrl-C in the terminal: SIGINT to the process group
        node.kill()
    return result


# ---------------------------------------------------------------------------------------------- simtime
def scenario_simtime(out: Path, video: str, env: dict, result: dict) -> dict:
    ns = "/sim/gmos_node"
    (out / "simtime.yaml").write_text(
        "/**:\n  ros__parameters:\n    fps: 8.0\n    pixel_limit: 2352\n    use_camera_info: false\n"
        "    diagnostics_period_s: 1.0\n    input_transport: compressed\n")
    node = NodeProcess(["ros2", "launch", "gmos_ros", "gmos.launch.py", *TINY, "namespace:=sim",
                        "use_sim_time:=true", "image_topic:=/sim_cam/image",
                        f"params_file:={out / 'simtime.yaml'}"], out / "simtime.log", env)
    h = Harness(ns)
    stop_clock = threading.Event()
    sim = {"ns": 1000 * 10**9}
    try:
        h.record("/diagnostics", DiagnosticArray, 50)
        h.record("/sim/objects", MovingObjectArray)
        clock_pub = h.node.create_publisher(Clock, "/clock", 10)

        def tick() -> None:  # 10x faster than wall time: 1 s of sim time every 0.1 s
            while not stop_clock.is_set():
                sim["ns"] += 100_000_000
                clock_pub.publish(Clock(clock=Time(sec=sim["ns"] // 10**9, nanosec=sim["ns"] % 10**9)))
                time.sleep(0.01)

        threading.Thread(target=tick, daemon=True).start()
        result["state_at_start"] = h.wait_state("active", 120.0)
        # compressed transport: the node subscribes to <image_topic>/compressed
        reliable = h.node.create_publisher(CompressedImage, "/sim_cam/image/compressed", RELIABLE)
        best_effort = h.node.create_publisher(CompressedImage, "/sim_cam/image/compressed", qos_profile_sensor_data)
        h.wait(lambda: reliable.get_subscription_count() >= 1, 20.0)
        frames = video_frames(video, 6)
        h.wait(lambda: bool(h.diagnostics()), 30.0)
        received = lambda: int(h.diagnostics().get("frames_received", -1))  # noqa: E731
        counts = {"start": received()}
        for i in range(3):
            reliable.publish(compressed_msg(frames[i], T0 + i * PERIOD_NS))
            time.sleep(0.3)
        h.wait(lambda: received() >= counts["start"] + 3, 30.0)
        counts["after_reliable"] = received()
        for i in range(3, 6):
            best_effort.publish(compressed_msg(frames[i], T0 + i * PERIOD_NS))
            time.sleep(0.3)
        h.wait(lambda: received() >= counts["after_reliable"] + 3, 15.0)
        counts["after_best_effort"] = received()
        result["received"] = counts
        h.call(Trigger, f"/sim/reset_window", Trigger.Request())
        h.wait(lambda: counters_consistent(h.diagnostics()), 60.0)
        result["diagnostics"] = h.diagnostics()
        result["diagnostics_stamps"] = [stamp_ns(m.header) for m in h.messages("/diagnostics")]
        result["sim_ns_at_end"] = sim["ns"]
        result["wall_ns_at_end"] = time.time_ns()
        result["objects_out"] = h.count("/sim/objects")
    finally:
        stop_clock.set()
        h.close()
        # SIGTERM to the node process itself (a supervisor, `kill`, a container stop): exit 0, no traceback
        pid = node.node_pid()
        result["node_pid"] = pid
        os.kill(pid, signal.SIGTERM)
        sent = time.monotonic()
        result["node_stopped_by_sigterm"] = node.wait_log(r"process has (finished cleanly|died)", 90.0)
        result["sigterm_to_exit_s"] = round(time.monotonic() - sent, 2)
        try:  # with its only process gone, `ros2 launch` ends by itself
            result["launch_rc"] = node.proc.wait(20.0)
        except subprocess.TimeoutExpired:
            result["launch_rc"] = "still running"
        result["stop"] = {"log": node.text()}
        node.kill()
    return result


# ---------------------------------------------------------------------------------------------- failures
def scenario_failures(out: Path, video: str, env: dict, result: dict) -> dict:
    ns = "/fail/gmos_node"
    missing = {name: f"/nonexistent/gmos_{name}.{ext}" for name, ext in
               (("pi3_weights", "safetensors"), ("sam2_checkpoint", "pt"), ("head_weights", "safetensors"))}
    weights = [arg for name, path in missing.items() for arg in ("-p", f"{name}:={path}")]
    node = NodeProcess(["ros2", "run", "gmos_ros", "gmos_node", "--ros-args", "-r", "__ns:=/fail",
                        "-p", "autostart:=false", "-p", "device:=cpu", "-p", "mode:=gmos_s", *weights],
                       out / "failures.log", env)
    # a params file with an integer where a float is declared and a value out of range
    (out / "bad.yaml").write_text("/**:\n  ros__parameters:\n    fps: 30\n    mask_threshold: 1.5\n"
                                  "    device: cpu\n    tiny_random_model: true\n")
    bad = NodeProcess(["ros2", "run", "gmos_ros", "gmos_node", "--ros-args", "-r", "__ns:=/bad",
                       "--params-file", str(out / "bad.yaml")], out / "bad_params.log", env)
    h = Harness(ns)
    try:
        result["initial_state"] = h.wait_state("unconfigured", 120.0)
        result["configure"] = h.transition(Transition.TRANSITION_CONFIGURE)
        result["publishers_after_configure"] = h.node.count_publishers("/fail/objects")
        result["activate"] = h.transition(Transition.TRANSITION_ACTIVATE)
        result["state_after_failed_activate"] = h.state()
        h.record("/diagnostics", DiagnosticArray, 50)
        h.wait(lambda: bool(h.diagnostics()), 10.0)
        result["diagnostics_after_failed_activate"] = h.diagnostics()
        result["cleanup"] = h.transition(Transition.TRANSITION_CLEANUP)
        result["configure_again"] = h.transition(Transition.TRANSITION_CONFIGURE)
        time.sleep(1.0)  # discovery of the new publishers
        result["publishers_after_reconfigure"] = h.node.count_publishers("/fail/objects")
        result["shutdown"] = h.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN)
        result["state_after_shutdown"] = h.state()
        result["missing_files"] = list(missing.values())
        result["bad_params_state"] = Harness.state(_Named(h, "/bad/gmos_node"))
    finally:
        h.close()
        result["stop"] = node.stop(signal.SIGINT)
        result["bad_stop"] = bad.stop(signal.SIGTERM, group=False)
        node.kill()
        bad.kill()
    return result


class _Named:
    """The harness's service helpers for another node name."""

    def __init__(self, harness: Harness, ns: str):
        self._h, self.ns = harness, ns

    def call(self, *args, **kwargs):
        return self._h.call(*args, **kwargs)


# -------------------------------------------------------------------------------------------- geometric
def scenario_geometric(out: Path, video: str, env: dict, result: dict) -> dict:
    """The weight-free mode at camera rate: `mode:=geometric` with no weight file on a CPU (the default
    `device: cuda` left as it is), 480x272 rgb8 + camera_info at 10 Hz in real time, default overload policy."""
    ns = "/gmos/gmos_node"
    width, height, count, period = 480, 272, 30, 100_000_000
    (out / "geometric.yaml").write_text(
        "/**:\n  ros__parameters:\n    fps: 10.0\n    use_camera_info: true\n    image_qos: RELIABLE\n"
        "    image_qos_depth: 10\n    diagnostics_period_s: 0.5\n")
    node = NodeProcess(["ros2", "launch", "gmos_ros", "gmos.launch.py", "mode:=geometric",
                        f"params_file:={out / 'geometric.yaml'}", "image_topic:=/cam/image",
                        "camera_info_topic:=/cam/info"], out / "geometric.log", env)
    h = Harness(ns)
    try:
        for topic in ("objects", "dynamic_mask", "instance_mask"):
            h.record(f"/gmos/{topic}", OUTPUTS[topic])
        h.record("/diagnostics", DiagnosticArray, 50)
        result["state_at_start"] = h.wait_state("active", 120.0)
        image_pub = h.node.create_publisher(Image, "/cam/image", RELIABLE)
        info_pub = h.node.create_publisher(CameraInfo, "/cam/info", RELIABLE)
        h.wait(lambda: image_pub.get_subscription_count() >= 1 and info_pub.get_subscription_count() >= 1, 20.0)
        frames = video_frames(video, count, every=3, size=(width, height))  # the dog runs: 10 Hz of a 30 fps clip
        sent = []
        start = time.monotonic()
        for i, rgb in enumerate(frames):
            time.sleep(max(0.0, start + i * period / 1e9 - time.monotonic()))  # real-time 10 Hz
            stamp = T0 + i * period
            info = CameraInfo(header=make_header(stamp), height=height, width=width, distortion_model="plumb_bob",
                              k=[400.0, 0.0, width / 2, 0.0, 400.0, height / 2, 0.0, 0.0, 1.0])
            info_pub.publish(info)
            image_pub.publish(image_msg(rgb, stamp))
            sent.append(stamp)
        h.wait(lambda: h.count("/gmos/objects") >= count - 2, 30.0)  # the last 2 wait for their look-ahead
        time.sleep(1.0)  # one more diagnostics period
        result["sent"] = sent
        result["outputs"] = {topic: [stamp_ns(m.header) for m in h.messages(f"/gmos/{topic}")]
                             for topic in ("objects", "dynamic_mask", "instance_mask")}
        result["moving_pixels"] = [int(np.count_nonzero(np.frombuffer(bytes(m.data), np.uint8)))
                                   for m in h.messages("/gmos/dynamic_mask")]
        result["objects_per_frame"] = [len(m.objects) for m in h.messages("/gmos/objects")]
        result["diagnostics"] = h.diagnostics()
    finally:
        h.close()
        result["stop"] = node.stop(signal.SIGINT)
        node.kill()
    return result


SCENARIOS = {"stream": scenario_stream, "simtime": scenario_simtime, "failures": scenario_failures,
             "geometric": scenario_geometric}


def main() -> int:
    scenario, out, video = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"scenario": scenario}
    started = time.monotonic()
    rclpy.init()
    try:
        SCENARIOS[scenario](out, video, dict(os.environ), result)
    except Exception as err:  # the test reports it with the logs
        import traceback

        result["driver_error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
    finally:
        result["wall_s"] = round(time.monotonic() - started, 1)
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
