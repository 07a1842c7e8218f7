"""NodeCore: everything the GMOS node does between "a message arrived" and "publish these", without rclpy.

Thread model (the live node): subscription callbacks call ``on_image`` (cheap: checks, bookkeeping,
append to a bounded queue); one worker thread (``start_worker``) converts images, runs the engine and
hands ``OutputRecord``s to a sink that publishes them. Replay calls ``on_image`` then ``process_pending``
in the same thread, so its queue never holds more than one frame and nothing is skipped.

Overload policy (frames arrive faster than the engine runs), in two steps that both act on whole
windows (``window_size`` frames) so the window the model sees stays made of consecutive frames:

1. catch-up: at each window boundary the worker looks at the backlog; if ``skip_backlog_frames`` or more
   frames wait, the next window's frames are pushed as context only (``segment=False``: the engine keeps
   them for later windows but does not segment them) and the window is counted as skipped;
2. bound: if the queue still reaches ``max_queue_frames``, the oldest whole window of waiting frames is
   dropped without being processed (counted as dropped frames and a skipped window).

So the queue never exceeds ``max_queue_frames`` and the latency of a published frame is bounded by
about ``max_queue_frames`` processing times plus the model's look-ahead.

Resets (window cleared, results of frames already pushed flushed first): on request (service), when
the source time jumps backwards (bag looping) and when the image size changes; each logs a warning.
"""
from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional, Protocol

import numpy as np

from gmos_core.engine.result import FrameResult

from .encodings import (DEPTH_ENCODINGS, ImageFormatError, UnsupportedEncodingError, compressed_to_rgb,
                        image_to_rgb, is_supported_image_encoding)
from .messages import stamp_to_ns
from .params import NodeParams

DIAGNOSTIC_OK, DIAGNOSTIC_WARN, DIAGNOSTIC_ERROR = 0, 1, 2


class EngineLike(Protocol):
    """The part of gmos_core.engine.StreamingEngine the node uses."""

    def push(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = "", key: Any = None,
             segment: bool = True) -> list[FrameResult]: ...

    def flush(self) -> list[FrameResult]:
        """Results of every frame still pending; the engine then starts a fresh stream."""

    def reset(self) -> None: ...

    @property
    def lookahead_frames(self) -> int: ...

    @property
    def window_fill(self) -> float: ...


@dataclass
class InputFrame:
    """One received frame with what was synchronised with it (the FrameIdentity.key of its result)."""

    image: Any  # sensor_msgs/Image or CompressedImage
    camera_info: Any = None
    depth: Any = None
    compressed: bool = False
    receive_ns: int = 0
    rgb: Optional[np.ndarray] = None  # set when converted; the debug overlay of its result uses it

    @property
    def header(self) -> Any:
        return self.image.header

    @property
    def stamp_ns(self) -> int:
        return stamp_to_ns(self.image.header)


@dataclass(frozen=True)
class _ResetMarker:
    """Queue entry: reset the window here (frames before it end the old stream)."""

    reason: str


@dataclass
class OutputRecord:
    """A segmented frame ready to publish: its result and the source messages it describes."""

    result: FrameResult
    source: InputFrame
    rgb: Optional[np.ndarray]
    latency_ns: int  # node clock at output minus the source stamp

    @property
    def header(self) -> Any:
        return self.source.header


@dataclass
class DiagnosticStatusRecord:
    """One diagnostic_msgs/DiagnosticStatus as plain data."""

    level: int
    name: str
    message: str
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)


class _Recent:
    """Last N values, for means and percentiles."""

    def __init__(self, size: int):
        self.values: Deque[float] = collections.deque(maxlen=size)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def summary(self, scale: float = 1.0) -> dict[str, str]:
        if not self.values:
            return {"mean": "n/a", "p50": "n/a", "p95": "n/a", "max": "n/a"}
        arr = np.asarray(self.values) * scale
        return {"mean": f"{arr.mean():.1f}", "p50": f"{np.percentile(arr, 50):.1f}",
                "p95": f"{np.percentile(arr, 95):.1f}", "max": f"{arr.max():.1f}"}


class _Rate:
    """Events per second over the last N events, measured on the node clock."""

    def __init__(self, size: int):
        self.stamps: Deque[int] = collections.deque(maxlen=size)

    def tick(self, now_ns: int) -> None:
        self.stamps.append(now_ns)

    def hz(self) -> float:
        if len(self.stamps) < 2 or self.stamps[-1] <= self.stamps[0]:
            return 0.0
        return (len(self.stamps) - 1) * 1e9 / (self.stamps[-1] - self.stamps[0])


@dataclass
class NodeCounters:
    received: int = 0  # frames given to on_image
    ignored_disabled: int = 0  # received while disabled
    duplicates: int = 0  # same stamp as the previous frame (ignored)
    rejected: int = 0  # bad encoding or malformed image
    depth_rejected: int = 0  # depth images with an unsupported encoding (the frame is still segmented)
    queued: int = 0  # entered the queue
    pushed: int = 0  # given to the engine
    segmented: int = 0  # outputs produced (one per segmented frame)
    skipped_frames: int = 0  # pushed as context only, or skipped by the engine
    skipped_windows: int = 0  # whole windows not segmented (catch-up or dropped)
    dropped_frames: int = 0  # discarded from the queue without being processed
    resets: int = 0
    failures: int = 0  # engine errors


class NodeCore:
    """The node's logic. See the module docstring for the threading and overload model.

    params:         validated NodeParams
    engine_factory: builds the engine from the params (called on ``activate``)
    clock_ns:       the node's clock in integer ns (ROS time: honours use_sim_time); used for rates
                    and end-to-end latency. Defaults to the wall clock for use outside ROS.
    logger:         anything with debug/info/warning/error(str) (an rclpy logger or a logging.Logger)
    image_converter: sensor_msgs/Image → RGB (default: the numpy ``image_to_rgb``; the node passes a
                    cv_bridge-first converter where cv_bridge is installed)
    """

    def __init__(self, params: NodeParams, engine_factory: Callable[[NodeParams], EngineLike],
                 clock_ns: Optional[Callable[[], int]] = None, logger: Any = None,
                 image_converter: Callable[[Any], np.ndarray] = image_to_rgb):
        self.params = params
        self._image_converter = image_converter
        self._engine_factory = engine_factory
        self._clock_ns = clock_ns or time.time_ns
        self.log = logger or logging.getLogger("gmos.bridge")
        self.engine: Optional[EngineLike] = None
        self.enabled = params.enabled
        self.counters = NodeCounters()
        self._queue: Deque[InputFrame] = collections.deque()
        self._cond = threading.Condition()
        self._engine_lock = threading.Lock()  # push/flush/reset never run concurrently
        self._last_stamp_ns: Optional[int] = None
        self._last_size: Optional[tuple[int, int]] = None
        self._window_position = 0  # frames pushed in the current window block
        self._segment_block = True
        self._warned_encodings: set[str] = set()
        self._last_problem = ""
        self._recent_problem_ns: Optional[int] = None
        self._last_skip_ns: Optional[int] = None
        self._input_rate = _Rate(params.stats_window)
        self._output_rate = _Rate(params.stats_window)
        self._latency = _Recent(params.stats_window)
        self._stage_ms: dict[str, _Recent] = {}
        self._stats_lock = threading.Lock()
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    @property
    def active(self) -> bool:
        return self.engine is not None

    def activate(self) -> None:
        """Build the engine (load weights, warm up) if not built yet."""
        if self.engine is None:
            self.engine = self._engine_factory(self.params)
            model = getattr(getattr(self.engine, "models", None), "description", "") or "?"
            self.log.info(f"GMOS engine ready: mode={self.params.mode} device={self.params.device} "
                          f"window={self.params.window_size} model: {model}")

    def deactivate(self) -> None:
        """Stop the worker, drop queued frames and the engine (frees its GPU memory)."""
        self.stop_worker()
        with self._cond:
            self._queue.clear()
        with self._engine_lock:
            self.engine = None
        self._window_position = 0
        self._last_stamp_ns = self._last_size = None
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ callback side
    def on_image(self, image: Any, camera_info: Any = None, depth: Any = None, compressed: bool = False) -> bool:
        """Accept one frame (callback side: cheap, never runs the model). Returns False if not queued."""
        now = self._clock_ns()
        self.counters.received += 1
        with self._stats_lock:
            self._input_rate.tick(now)
        if not self.enabled:
            self.counters.ignored_disabled += 1
            return False
        if not compressed and not is_supported_image_encoding(image.encoding):
            self._reject(f"image encoding {image.encoding!r} is not supported; expected one of rgb8, bgr8, "
                         f"rgba8, bgra8, mono8, yuv422 (uyvy), yuv422_yuy2 (yuyv)", key=str(image.encoding))
            return False
        if depth is not None and str(depth.encoding) not in DEPTH_ENCODINGS:
            # the image is still segmented; only the masked depth is left out
            self._reject(f"depth encoding {depth.encoding!r} is not supported; expected one of "
                         f"{sorted(DEPTH_ENCODINGS)}; the image is segmented without it (no masked_depth)",
                         key="depth:" + str(depth.encoding), what="depth image ignored")
            self.counters.rejected -= 1  # the frame itself is accepted
            self.counters.depth_rejected += 1
            depth = None
        frame = InputFrame(image=image, camera_info=camera_info, depth=depth, compressed=compressed,
                           receive_ns=now)
        stamp = frame.stamp_ns
        size = None if compressed else (int(image.height), int(image.width))
        with self._cond:
            if stamp == self._last_stamp_ns:
                self.counters.duplicates += 1
                return False
            if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:
                self._request_reset_locked(
                    f"time jumped backwards by {(self._last_stamp_ns - stamp) / 1e9:.3f} s (bag looping?)")
            elif size is not None and self._last_size is not None and size != self._last_size:
                self._request_reset_locked(f"image size changed from {self._last_size[1]}x{self._last_size[0]} "
                                           f"to {size[1]}x{size[0]}")
            self._last_stamp_ns = stamp
            if size is not None:
                self._last_size = size
            if self._frames_waiting_locked() >= self.params.max_queue_frames:
                self._drop_oldest_window_locked(now)
            self._queue.append(frame)
            self.counters.queued += 1
            self._cond.notify()
        return True

    def request_reset(self, reason: str = "reset requested") -> None:
        """Clear the window before the next frame (service 'reset_window')."""
        with self._cond:
            self._request_reset_locked(reason)
            self._cond.notify()

    def set_enabled(self, enabled: bool) -> None:
        """Enable/disable processing (service 'enable'); disabling clears the window."""
        if self.enabled and not enabled:
            self.request_reset("disabled")
        self.enabled = bool(enabled)

    def _request_reset_locked(self, reason: str) -> None:
        # A marker in the queue: frames received before the reset are still processed (and flushed) as the
        # end of the old stream; frames after it start a new window.
        self._queue.append(_ResetMarker(reason))
        self._last_size = None
        self.log.warning(f"GMOS window reset: {reason}")

    def _drop_oldest_window_locked(self, now: int) -> None:
        dropped, markers = 0, []
        while self._queue and dropped < self.params.window_size:
            item = self._queue.popleft()
            if isinstance(item, _ResetMarker):
                markers.append(item)  # resets are never dropped
            else:
                dropped += 1
        self._queue.extendleft(reversed(markers))
        self.counters.dropped_frames += dropped
        self.counters.skipped_windows += 1
        self._last_skip_ns = now

    def _reject(self, problem: str, key: str, what: str = "frame refused") -> None:
        self.counters.rejected += 1
        self._last_problem = problem
        self._recent_problem_ns = self._clock_ns()
        if key not in self._warned_encodings:  # one clear line per kind of problem, not one per frame
            self._warned_encodings.add(key)
            self.log.error(f"GMOS: {what}: {problem}")

    # ------------------------------------------------------------------ worker side
    @property
    def queue_length(self) -> int:
        """Frames waiting for the worker."""
        with self._cond:
            return self._frames_waiting_locked()

    def process_pending(self, max_frames: Optional[int] = None) -> list[OutputRecord]:
        """Push queued frames to the engine (oldest first); return the outputs that became ready."""
        outputs: list[OutputRecord] = []
        done = 0
        while max_frames is None or done < max_frames:
            with self._cond:
                item = self._queue.popleft() if self._queue else None
                backlog = self._frames_waiting_locked()
            if item is None:
                break
            if isinstance(item, _ResetMarker):
                outputs.extend(self._reset_engine())
                continue
            outputs.extend(self._push(item, backlog))
            done += 1
        return outputs

    def _frames_waiting_locked(self) -> int:
        return sum(not isinstance(item, _ResetMarker) for item in self._queue)

    def wait_for_frames(self, timeout_s: float) -> bool:
        """Block until a frame (or a reset) is pending or the timeout passes."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout_s)
            return bool(self._queue)

    def flush(self) -> list[OutputRecord]:
        """End of stream: process what is queued, then the frames still waiting for look-ahead."""
        outputs = self.process_pending()
        if self.engine is not None:
            with self._engine_lock:
                results = self.engine.flush()
            outputs.extend(self._collect(results))
        return outputs

    def _reset_engine(self) -> list[OutputRecord]:
        outputs: list[OutputRecord] = []
        if self.engine is not None:
            with self._engine_lock:
                results = self.engine.flush()  # also starts a fresh stream: no separate reset()
            outputs = self._collect(results)
        self.counters.resets += 1
        self._window_position = 0
        return outputs

    def _push(self, frame: InputFrame, backlog: int) -> list[OutputRecord]:
        if self.engine is None:
            raise RuntimeError("NodeCore.process_pending called before activate(); expected an active node")
        if self._window_position % self.params.window_size == 0:
            self._segment_block = backlog < self.params.skip_backlog_frames
            if not self._segment_block:
                self.counters.skipped_windows += 1
                self._last_skip_ns = self._clock_ns()
        self._window_position += 1
        try:
            rgb = compressed_to_rgb(frame.image) if frame.compressed else self._image_converter(frame.image)
        except (UnsupportedEncodingError, ImageFormatError) as err:
            self._reject(str(err), key=type(err).__name__ + str(getattr(frame.image, "encoding", "")))
            return []
        try:
            with self._engine_lock:
                results = self.engine.push(rgb, frame.stamp_ns, str(frame.header.frame_id), key=frame,
                                           segment=self._segment_block)
        except Exception as err:  # keep the node alive; say what failed
            self.counters.failures += 1
            self._last_problem = f"engine error: {type(err).__name__}: {err}"
            self._recent_problem_ns = self._clock_ns()
            self.log.error(f"GMOS: {self._last_problem}")
            return []
        self.counters.pushed += 1
        frame.rgb = rgb
        return self._collect(results)

    def _collect(self, results: list[FrameResult]) -> list[OutputRecord]:
        outputs = []
        now = self._clock_ns()
        for result in results:
            source: InputFrame = result.frame.key
            if result.skipped:
                self.counters.skipped_frames += 1
                continue
            latency = now - result.frame.stamp_ns
            outputs.append(OutputRecord(result=result, source=source, rgb=source.rgb,
                                        latency_ns=latency))
            self.counters.segmented += 1
            with self._stats_lock:  # diagnostics() reads these from the timer's thread
                self._output_rate.tick(now)
                self._latency.add(latency / 1e6)
                for stage, ms in result.timings_ms.items():
                    self._stage_ms.setdefault(stage, _Recent(self.params.stats_window)).add(ms)
        return outputs

    # ------------------------------------------------------------------ worker thread
    def start_worker(self, sink: Callable[[list[OutputRecord]], None], poll_s: float = 0.1) -> None:
        """Run process_pending in a daemon thread, handing each batch of outputs to ``sink``."""
        if self._worker is not None and self._worker.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                if not self.wait_for_frames(poll_s):
                    continue
                records = self.process_pending(max_frames=1)
                if records:
                    try:
                        sink(records)
                    except Exception as err:  # a publishing error must not kill the worker
                        self.log.error(f"GMOS: publishing failed: {type(err).__name__}: {err}")

        self._worker = threading.Thread(target=loop, name="gmos-engine", daemon=True)
        self._worker.start()

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        if self._worker is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._worker.join(timeout_s)
        self._worker = None

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self, hardware_id: str = "") -> list[DiagnosticStatusRecord]:
        """The node's state as one DiagnosticStatus (see docs/ros.md for each key)."""
        now = self._clock_ns()
        c = self.counters
        with self._stats_lock:
            input_hz, output_hz = self._input_rate.hz(), self._output_rate.hz()
            latency = self._latency.summary()
            stages = {stage: recent.summary() for stage, recent in sorted(self._stage_ms.items())}
        values: dict[str, str] = {
            "enabled": str(self.enabled),
            "active": str(self.active),
            "mode": self.params.mode,
            "input_rate_hz": f"{input_hz:.2f}",
            "output_rate_hz": f"{output_hz:.2f}",
            "frames_received": str(c.received),
            "frames_segmented": str(c.segmented),
            "frames_skipped": str(c.skipped_frames),
            "windows_skipped": str(c.skipped_windows),
            "frames_dropped": str(c.dropped_frames),
            "frames_rejected": str(c.rejected),
            "depth_rejected": str(c.depth_rejected),
            "frames_ignored_disabled": str(c.ignored_disabled),
            "frames_duplicate": str(c.duplicates),
            "engine_failures": str(c.failures),
            "resets": str(c.resets),
            "queue_frames": str(self.queue_length),
            "lookahead_frames": str(self.engine.lookahead_frames) if self.engine is not None else "n/a",
            "window_fill": str(self.engine.window_fill) if self.engine is not None else "n/a",
            "window_size": str(self.params.window_size),
        }
        for stat, text in latency.items():
            values[f"latency_ms_{stat}"] = text
        for stage, summary in stages.items():
            values[f"time_ms_{stage}_mean"] = summary["mean"]
            values[f"time_ms_{stage}_p95"] = summary["p95"]
        values["gpu_memory_mb"] = _gpu_memory_mb()
        values["last_problem"] = self._last_problem or "none"
        period_ns = int(self.params.diagnostics_period_s * 1e9) * 2
        level, message = DIAGNOSTIC_OK, "running" if self.active else "inactive"
        if self._last_skip_ns is not None and now - self._last_skip_ns <= period_ns:
            level, message = DIAGNOSTIC_WARN, "overloaded: skipping windows to stay current"
        if self._recent_problem_ns is not None and now - self._recent_problem_ns <= period_ns:
            level, message = DIAGNOSTIC_ERROR if c.failures else DIAGNOSTIC_WARN, self._last_problem
        if not self.enabled:
            message = "disabled"
        return [DiagnosticStatusRecord(level=level, name="gmos: segmentation", message=message,
                                       hardware_id=hardware_id, values=values)]


def _gpu_memory_mb() -> str:
    torch = sys.modules.get("torch")  # never import torch just for diagnostics
    if torch is None or not torch.cuda.is_available():
        return "n/a"
    return f"{torch.cuda.memory_allocated() / 2**20:.0f}"
