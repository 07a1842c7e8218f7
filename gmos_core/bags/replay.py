"""Replay a rosbag2 through the node's logic (``gmos_core.bridge.NodeCore``) into an output bag.

Per input image, in bag order: pair it with camera_info/depth (``sync``), hand it to ``NodeCore.on_image``
and ``process_pending`` exactly as the live node's callback and worker do, turn the resulting output
records into the node's messages with the bridge's builders, and write them. Every input image ends as
either its outputs or one record on ``<namespace>/replay/skipped`` saying why (the summary counts both).

Times in the output bag: every output carries the header of the frame it describes (stamp and frame_id
verbatim). Its bag *log* time is the bag time at which the live node would have published it: the log
time of the input message that completed its window (so look-ahead shows as a delay, and log times
never go backwards, which keeps an interrupted mcap readable by a plain scan).
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from gmos_core.bags.reader import CAMERA_INFO_TYPES, DEPTH_TYPES, IMAGE_TYPES, BagInputError, open_bag
from gmos_core.bags.sync import BagFrame, PassThrough, synchronised_frames
from gmos_core.bags.typestore import check_distro
from gmos_core.bags.writer import BagWriter, check_storage

SKIPPED_TOPIC = "replay/skipped"  # relative to the namespace
DIAGNOSTIC_WARN = 1
# Memory stays flat however long the bag (issue 15): every per-frame output goes to the bag or the overlay
# video as it is produced; what replay keeps per frame is bounded or a few bytes (timeline stamps).
SKIP_RECORDS_LISTED = 100  # skip records kept in the summary; all of them are in the bag's replay/skipped
SKIP_REASONS_LISTED = 50  # distinct reasons counted by name; further ones are counted together
OTHER_REASONS = "other reasons (see the bag's replay/skipped topic)"


class ReplayInterrupted(Exception):
    """A second SIGINT/SIGTERM during a replay: stop at once (the output bag is still finalised)."""


@dataclass
class ReplayOptions:
    """What ``replay_bag`` reads and writes (the CLI flags of ``gmos replay``)."""

    image_topic: str
    camera_info_topic: Optional[str] = None
    depth_topic: Optional[str] = None
    namespace: str = "/gmos"
    storage: Optional[str] = None  # mcap | sqlite3 (None: the distro's default)
    ros_distro: str = "jazzy"
    copy_inputs: bool = True  # copy the input topics used (image, camera_info, depth) alongside
    debug_image: bool = False  # also write <ns>/debug_image (an rgb8 overlay per frame)
    diagnostics: bool = True  # write /diagnostics once per diagnostics_period_s of bag time
    max_frames: Optional[int] = None
    sync_slop_s: float = 0.01

    def __post_init__(self) -> None:
        for name in ("image_topic", "camera_info_topic", "depth_topic"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.startswith("/")):
                raise ValueError(f"{name} must be an absolute topic name (starting with '/'), got {value!r}")
        if not (self.namespace.startswith("/")):
            raise ValueError(f"namespace must start with '/', got {self.namespace!r}")
        self.namespace = "/" + self.namespace.strip("/") if self.namespace.strip("/") else ""
        self.ros_distro = check_distro(self.ros_distro)
        if self.storage is not None:
            self.storage = check_storage(self.storage)
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if not (0 <= self.sync_slop_s <= 1.0):
            raise ValueError(f"sync_slop_s must be in [0, 1] seconds, got {self.sync_slop_s}")

    def topic(self, relative: str) -> str:
        return relative if relative.startswith("/") else f"{self.namespace}/{relative}"


@dataclass
class SkipRecord:
    index: int
    stamp_ns: int
    frame_id: str
    reason: str


@dataclass
class ReplaySummary:
    """Counts, timings and artefacts of one replay. ``frames_in == frames_out + frames_skipped`` unless
    the run was interrupted (then the difference were frames still waiting for their window)."""

    in_bag: str
    out_bag: str
    storage: str
    ros_distro: str
    frames_in: int = 0
    frames_out: int = 0
    frames_skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    skipped: list[SkipRecord] = field(default_factory=list)  # the first SKIP_RECORDS_LISTED
    skipped_not_listed: int = 0  # skips beyond those (each is in the output bag's replay/skipped topic)
    frames_pending_at_interrupt: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    real_time_factor: float = 0.0
    stage_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    lookahead_frames: Optional[int] = None  # the engine's look-ahead (frames after a frame before its result)
    observed_delay_frames: dict[str, float] = field(default_factory=dict)
    output_topics: dict[str, int] = field(default_factory=dict)
    model: str = ""
    input_recovery: Optional[str] = None
    artefacts: dict[str, str] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    @property
    def accounted(self) -> bool:
        return self.frames_in == self.frames_out + self.frames_skipped + self.frames_pending_at_interrupt

    def to_json(self) -> str:
        data = asdict(self)
        data["accounted"] = self.accounted
        return json.dumps(data, indent=2, default=str)

    def format(self) -> str:
        lines = [
            f"replay {self.in_bag} -> {self.out_bag} ({self.storage}, ROS 2 {self.ros_distro})",
            f"  model: {self.model}" if self.model else "",
            f"  frames: {self.frames_in} in, {self.frames_out} segmented, {self.frames_skipped} skipped"
            + (f", {self.frames_pending_at_interrupt} pending at interrupt" if self.interrupted else "")
            + ("" if self.accounted else "  (COUNTS DO NOT ADD UP)"),
        ]
        for reason, count in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"    skipped {count}x: {reason}")
        if self.input_recovery:
            lines.append(f"  input bag was damaged, read after recovery: {self.input_recovery}")
        lines.append(f"  wall time {self.wall_s:.2f} s for {self.bag_span_s:.2f} s of bag time: "
                     f"real-time factor {self.real_time_factor:.3f} (>= 1 keeps up with the recording)")
        if self.lookahead_frames is not None:
            delay = self.observed_delay_frames
            lines.append(f"  look-ahead: {self.lookahead_frames} frames by design; observed output delay "
                         f"mean {delay.get('mean', float('nan')):.1f}, max {delay.get('max', float('nan')):.0f} frames")
        if self.stage_ms:
            lines.append("  per-stage time per frame [ms]     mean      p50      p90      max")
            for stage, s in self.stage_ms.items():
                lines.append(f"    {stage:<28}{s['mean']:>8.2f} {s['p50']:>8.2f} {s['p90']:>8.2f} {s['max']:>8.2f}")
        if self.output_topics:
            lines.append("  output topics: " + ", ".join(f"{t} ({n})" for t, n in self.output_topics.items()))
        for name, value in self.evaluation.items():
            lines.append(f"  evaluation {name}: {value}")
        if self.interrupted:
            lines.append("  INTERRUPTED: the output bag holds every frame finished before the interrupt")
        for name, path in self.artefacts.items():
            lines.append(f"  {name}: {path}")
        return "\n".join(line for line in lines if line)


class _StageTimes:
    """Per-stage time distribution in constant memory: exact count, mean and max, and percentiles from a
    histogram of 0.5 %-wide logarithmic bins (p50/p90 are the lower nearest-rank values, to within 0.25 %
    of their value, or 1e-4 ms below that; numpy's interpolated percentile can lie between two ranks). Keeping every value grew by ~0.3 MB per 1,000 frames (issue 15)."""

    MIN_MS, MAX_MS, STEP = 1e-4, 1e7, 1.005
    BINS = int(math.ceil(math.log(MAX_MS / MIN_MS) / math.log(STEP))) + 1

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # stage -> [count, sum, max]
        self.histograms: dict[str, np.ndarray] = {}

    def add(self, stage: str, ms: float) -> None:
        ms = float(ms)
        stats = self.stats.get(stage)
        if stats is None:
            stats = self.stats[stage] = [0, 0.0, -math.inf]
            self.histograms[stage] = np.zeros(self.BINS, np.int64)
        stats[0] += 1
        stats[1] += ms
        stats[2] = max(stats[2], ms)
        self.histograms[stage][self._bin(ms)] += 1

    def _bin(self, ms: float) -> int:
        if not ms > self.MIN_MS:  # also NaN
            return 0
        return min(self.BINS - 1, int(math.log(ms / self.MIN_MS) / math.log(self.STEP)) + 1)

    def _percentile(self, stage: str, q: float) -> float:
        histogram = self.histograms[stage]
        count = int(self.stats[stage][0])
        rank = q / 100 * (count - 1)  # numpy's default (linear) percentile rank, rounded to a bin
        index = int(np.searchsorted(np.cumsum(histogram), math.floor(rank) + 1))
        if index == 0:
            return 0.0
        centre = self.MIN_MS * self.STEP ** (index - 0.5)  # geometric centre of the bin
        return float(min(centre, self.stats[stage][2]))

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, (count, total, largest) in self.stats.items():
            out[stage] = {"mean": total / count, "p50": self._percentile(stage, 50),
                          "p90": self._percentile(stage, 90), "max": float(largest), "count": int(count)}
        return out


class _RunningStats:
    """Count, mean and max of a stream of numbers (constant memory)."""

    def __init__(self) -> None:
        self.count, self.total, self.largest = 0, 0.0, -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += float(value)
        self.largest = max(self.largest, float(value))


class MotionTimeline:
    """Per track: the motion state on each segmented frame (for the objects x time plot).

    Kept small for long replays (issue 15): 8 bytes per frame (its stamp) plus, per track, its runs of
    equal state (start, stop, state). Only the ``MAX_TRACKS`` longest-lived tracks are plotted, so once more
    than ``KEEP_TRACKS`` tracks are known, the tracks outside the current top ``MAX_TRACKS`` that have been
    gone for ``FORGET_AFTER_FRAMES`` frames are forgotten: frame counts only grow, so such a track cannot
    reach the plot again unless its id comes back after that long. The tracks kept are then at most those
    seen in the last ``FORGET_AFTER_FRAMES`` (+ 64) frames plus the plotted ones, however long the run.
    """

    FOREGROUND = -1  # pseudo-track of GMOS-S results
    MAX_TRACKS = 40
    KEEP_TRACKS = 4 * MAX_TRACKS
    FORGET_AFTER_FRAMES = 300

    def __init__(self) -> None:
        self._stamps = array("q")
        self.runs: dict[int, list[list[int]]] = {}  # track -> [[first position, stop (exclusive), state], ...]
        self.frames_present: dict[int, int] = {}

    @property
    def stamps_ns(self) -> list[int]:
        return self._stamps.tolist()

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, result: Any) -> None:
        position = len(self._stamps)
        self._stamps.append(int(result.frame.stamp_ns))
        states: dict[int, int] = {}  # this frame's state per track (a repeated track id: the last one wins)
        for obj in result.objects:
            states[int(obj.track_id)] = int(obj.state)
        if result.mode == "gmos_s" and result.dynamic_mask is not None:
            # GMOS-S has no objects: one row for "the foreground moves on this frame" (any dynamic pixel).
            states[self.FOREGROUND] = 2 if bool(np.any(result.dynamic_mask)) else 1
        for track, state in states.items():
            runs = self.runs.setdefault(track, [])
            if runs and runs[-1][1] == position and runs[-1][2] == state:
                runs[-1][1] = position + 1
            else:
                runs.append([position, position + 1, state])
            self.frames_present[track] = self.frames_present.get(track, 0) + 1
        if len(self.runs) > self.KEEP_TRACKS and position % 64 == 0:
            self._forget_short_tracks(position)

    def _ranked(self) -> list[int]:
        """Track ids, longest-lived first (ties: smaller id first), the order ``matrix`` picks from."""
        return sorted(self.runs, key=lambda t: (-self.frames_present[t], t))

    def _forget_short_tracks(self, position: int) -> None:
        plotted = set(self._ranked()[: self.MAX_TRACKS])
        for track in [t for t, runs in self.runs.items()
                      if t not in plotted and runs[-1][1] <= position - self.FORGET_AFTER_FRAMES]:
            del self.runs[track], self.frames_present[track]

    def matrix(self, max_tracks: int = MAX_TRACKS) -> tuple[np.ndarray, list[int]]:
        """(tracks, frames) int8: -1 absent, else MotionState value; longest-lived tracks first."""
        tracks = self._ranked()[:max_tracks]
        tracks.sort()
        grid = np.full((len(tracks), len(self._stamps)), -1, np.int8)
        for row, track in enumerate(tracks):
            for start, stop, state in self.runs[track]:
                grid[row, start:stop] = state
        return grid, tracks

    def plot(self, path: Path, title: str = "") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        grid, tracks = self.matrix()
        stamps = np.frombuffer(self._stamps, np.int64) if len(self._stamps) else np.zeros(0, np.int64)
        times = (stamps.astype(np.float64) - (stamps[0] if len(stamps) else 0)) / 1e9
        height_in = 1.5 + 0.28 * max(1, len(tracks))
        fig, ax = plt.subplots(figsize=(10, height_in), dpi=100)
        colours = ["#ffffff", "#bdbdbd", "#3b75af", "#d62728"]  # absent, unknown, static, moving
        if len(tracks) and len(times):
            extent = (times[0], times[-1] if len(times) > 1 else times[0] + 1e-3, len(tracks) - 0.5, -0.5)
            ax.imshow(grid + 1, aspect="auto", interpolation="nearest", cmap=ListedColormap(colours),
                      vmin=0, vmax=3, extent=extent)
            ax.set_yticks(range(len(tracks)))
            ax.set_yticklabels(["foreground" if t == self.FOREGROUND else f"track {t}" for t in tracks], fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no objects segmented in {len(self._stamps)} frames", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_yticks([])
            if len(times) > 1:  # still show the replayed span, not matplotlib's default 0..1
                ax.set_xlim(times[0], times[-1])
        ax.set_xlabel("time since first frame [s]")
        import textwrap

        # long model descriptions are wrapped; the legend sits under the axes, right of the x label, where it
        # cannot cover the title
        lines = [w for line in (title or "motion timeline (objects x time)").split("\n")
                 for w in textwrap.wrap(line, 120) or [""]]
        ax.set_title("\n".join(lines), fontsize=9, loc="left")
        ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(colours[1:], ("unknown", "static", "moving"))],
                  loc="upper right", bbox_to_anchor=(1.0, -0.24 / height_in),
                  fontsize=7, ncol=3, frameon=False)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


@dataclass
class Artefacts:
    """Where the human-facing outputs go (None: not produced)."""

    summary_json: Optional[Path] = None
    timeline_png: Optional[Path] = None
    overlay_mp4: Optional[Path] = None

    @classmethod
    def beside(cls, out_bag: Path, overlay: bool = True, timeline: bool = True) -> "Artefacts":
        base = out_bag.parent / out_bag.name
        return cls(summary_json=Path(f"{base}_summary.json"),
                   timeline_png=Path(f"{base}_timeline.png") if timeline else None,
                   overlay_mp4=Path(f"{base}_overlay.mp4") if overlay else None)


def _stamp_rate(stamps: list[int]) -> float:
    if len(stamps) < 2:
        return 30.0
    period = float(np.median(np.diff(np.asarray(stamps, dtype=np.float64))))
    return 1e9 / period if period > 0 else 30.0


def replay_bag(
    in_bag: str | Path,
    out_bag: str | Path,
    options: ReplayOptions,
    make_node: Callable[[Callable[[], int]], Any],
    *,
    artefacts: Optional[Artefacts] = None,
    progress: bool = True,
    model_description: str = "",
    evaluate: Optional[Any] = None,
    handle_signals: bool = False,
) -> ReplaySummary:
    """Replay ``in_bag`` into ``out_bag`` (see the module doc).

    make_node(clock_ns) -> an *activated* ``gmos_core.bridge.NodeCore`` whose clock is ``clock_ns`` (replay
    passes the bag clock: the log time of the message being processed, like ``use_sim_time``).
    evaluate: a ``gmos_core.bags.evaluation.make_evaluator(...)``; its ``new_run()`` is fed every output
    record as it is produced (``add``) and scored at the end (``result``), so no record is kept.
    """
    from tqdm import tqdm

    from gmos_core.bridge.messages import (OUTPUT_TOPICS, TOPIC_DEBUG_IMAGE, TOPIC_DIAGNOSTICS,
                                           TOPIC_DYNAMIC_MASK_INFO, TOPIC_INSTANCE_MASK, TOPIC_MASKED_DEPTH,
                                           RosbagsMessageFactory, diagnostics_message, record_messages)

    in_bag, out_bag = Path(in_bag), Path(out_bag)
    artefacts = artefacts or Artefacts()
    stages = _StageTimes()
    timeline = MotionTimeline()
    evaluation = None
    if evaluate is not None:
        if not hasattr(evaluate, "new_run"):
            raise TypeError("replay_bag: evaluate must come from gmos_core.bags.evaluation.make_evaluator (a "
                            f"streaming evaluator with new_run()), got {type(evaluate).__name__}")
        evaluation = evaluate.new_run()
    storage = options.storage
    summary = ReplaySummary(in_bag=str(in_bag), out_bag=str(out_bag), storage="", ros_distro=options.ros_distro,
                            model=model_description)
    # Ctrl-C / SIGTERM: finish the frame in hand, then stop and finalise the bag (an exception raised in
    # the middle of a storage write could leave a torn record). A second signal stops at once.
    stop_requested: list[str] = []
    previous_handlers: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def _on_signal(signum: int, frame: Any) -> None:
            if stop_requested:
                raise ReplayInterrupted(signal.Signals(signum).name)
            stop_requested.append(signal.Signals(signum).name)
            print(f"\n{signal.Signals(signum).name}: stopping after the current frame (again to stop now)",
                  file=sys.stderr, flush=True)

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[signum] = signal.signal(signum, _on_signal)

    bag_now = [0]  # log time of the latest message read: the node's clock (use_sim_time)
    t_start = time.perf_counter()
    overlay_writer = None
    with open_bag(in_bag) as source:
        summary.input_recovery = source.recovered
        image_type = source.require_topic(options.image_topic, IMAGE_TYPES, "image")
        compressed = image_type.endswith("CompressedImage")
        if options.camera_info_topic:
            source.require_topic(options.camera_info_topic, CAMERA_INFO_TYPES, "camera_info")
        if options.depth_topic:
            source.require_topic(options.depth_topic, DEPTH_TYPES, "depth")
        total_images = source.topics[options.image_topic][1]
        if total_images == 0:
            raise BagInputError(f"image topic {options.image_topic!r} in {in_bag} has no messages; "
                                f"the bag has: {source.describe_topics()}")
        used_topics = [t for t in (options.image_topic, options.camera_info_topic, options.depth_topic) if t]
        reader = source.reader
        conns = [c for c in reader.connections if c.topic in used_topics]

        node = make_node(lambda: bag_now[0])
        params = node.params
        writer = BagWriter(out_bag, storage=storage, distro=options.ros_distro,
                           custom_data={"gmos_replay_input": str(in_bag.name), "gmos_model": model_description[:200]})
        summary.storage = writer.storage
        factory = RosbagsMessageFactory(writer.typestore)
        try:
            # Declare every topic up front: metadata.yaml lists them from the first checkpoint on.
            out_topics: dict[str, str] = {}
            for relative, msgtype in OUTPUT_TOPICS.items():
                if relative == TOPIC_DYNAMIC_MASK_INFO and not options.camera_info_topic:
                    continue
                if relative == TOPIC_MASKED_DEPTH and not (options.depth_topic and params.publish_masked_depth):
                    continue
                if relative == TOPIC_INSTANCE_MASK and not params.publish_instance_mask:
                    continue
                if relative == TOPIC_DEBUG_IMAGE and not options.debug_image:
                    continue
                if relative == TOPIC_DIAGNOSTICS and not options.diagnostics:
                    continue
                out_topics[options.topic(relative)] = msgtype
            skipped_topic = options.topic(SKIPPED_TOPIC)
            out_topics[skipped_topic] = "diagnostic_msgs/msg/DiagnosticArray"
            for topic, msgtype in out_topics.items():
                writer.add_topic(topic, msgtype)
            copy_topics: frozenset[str] = frozenset()
            if options.copy_inputs:
                for conn in conns:
                    if conn.topic in out_topics:
                        raise BagInputError(f"input topic {conn.topic} collides with an output topic; "
                                            f"choose another --namespace")
                    if conn.topic not in writer.topics:
                        writer.add_topic(conn.topic, conn.msgtype, qos=conn.ext.offered_qos_profiles,
                                         msgdef=conn.msgdef.data or None, digest=conn.digest or None)
                copy_topics = frozenset(used_topics)
            writer.checkpoint()  # metadata.yaml with every topic exists from here on

            pending: dict[int, BagFrame] = {}  # id(image msg) -> frame, waiting for its result
            diag_period_ns = int(params.diagnostics_period_s * 1e9)
            next_diag = [None]
            first_stamp: list[Optional[int]] = [None]
            last_stamp = [0]

            def skip(frame: BagFrame, reason: str) -> None:
                frame_id = str(getattr(getattr(frame.image, "header", None), "frame_id", ""))
                if len(summary.skipped) < SKIP_RECORDS_LISTED:
                    summary.skipped.append(SkipRecord(frame.index, frame.stamp_ns, frame_id, reason))
                else:
                    summary.skipped_not_listed += 1
                summary.frames_skipped += 1
                counted = reason if (reason in summary.skipped_by_reason
                                     or len(summary.skipped_by_reason) < SKIP_REASONS_LISTED) else OTHER_REASONS
                summary.skipped_by_reason[counted] = summary.skipped_by_reason.get(counted, 0) + 1
                header = factory.header(frame.stamp_ns, frame_id)
                status = _Status(DIAGNOSTIC_WARN, "gmos replay: frame skipped", reason, options.image_topic,
                                 {"frame_index": str(frame.index), "stamp_ns": str(frame.stamp_ns),
                                  "encoding": str(getattr(frame.image, "encoding", getattr(frame.image, "format", "")))})
                msg = diagnostics_message(factory, frame.stamp_ns, [status])
                msg = factory.replace(msg, header=header)
                writer.write(skipped_topic, max(bag_now[0], frame.log_time_ns), msg)

            def write_records(records: list[Any]) -> None:
                nonlocal overlay_writer
                for record in records:
                    frame = pending.pop(id(record.source.image), None)
                    # Frames pushed before this one without a record were dropped by the node.
                    if frame is None:
                        raise RuntimeError("internal error: an output record for a frame replay did not push")
                    _skip_older(frame.index)
                    t0 = time.perf_counter()
                    try:
                        messages = record_messages(factory, record, params, debug=options.debug_image)
                    except (ValueError, TypeError, KeyError) as exc:  # e.g. a malformed depth image
                        skip(frame, f"output messages could not be built: {type(exc).__name__}: {exc}")
                        continue
                    log_time = max(bag_now[0], frame.log_time_ns)
                    for relative, msg in messages.items():
                        writer.write(options.topic(relative), log_time, msg)
                    stages.add("serialise+write", (time.perf_counter() - t0) * 1e3)
                    for stage, ms in record.result.timings_ms.items():
                        stages.add(f"model:{stage}", ms)
                    summary.frames_out += 1
                    delays.add(current_index[0] - frame.index)
                    timeline.add(record.result)
                    if evaluation is not None:
                        evaluation.add(record, mask_threshold=params.mask_threshold)  # scored now, not kept
                    if artefacts.overlay_mp4 is not None and record.rgb is not None:
                        t0 = time.perf_counter()
                        from gmos_core.io import VideoWriter, overlay_frame
                        from gmos_core.io.overlay import caption_frame

                        if overlay_writer is None:
                            overlay_writer = VideoWriter(artefacts.overlay_mp4, fps=max(1.0, fps_guess[0]))
                        caption = f"model: {model_description}" if model_description else ""  # names the model
                        overlay_writer.write(caption_frame(overlay_frame(record.rgb, record.result.labels), caption))
                        stages.add("overlay video", (time.perf_counter() - t0) * 1e3)

            def _skip_older(index: int) -> None:
                for key, frame in list(pending.items()):
                    if frame.index < index:
                        del pending[key]
                        skip(frame, _node_reason(node, before))

            delays = _RunningStats()
            lookahead: list[Optional[int]] = [None]
            current_index = [0]
            fps_guess = [30.0]
            stamps_seen: list[int] = []
            before = _Counters.of(node)
            from gmos_core.bags.fast_mcap import fast_messages

            messages = fast_messages(reader, set(used_topics))  # zero-copy for uncompressed indexed mcap
            if messages is None:
                messages = ((conn.topic, t, raw) for conn, t, raw in reader.messages(connections=conns))
            frames = synchronised_frames(
                messages, reader.deserialize, options.image_topic, image_type,
                camera_info_topic=options.camera_info_topic, depth_topic=options.depth_topic,
                slop_ns=int(options.sync_slop_s * 1e9), copy_topics=copy_topics)
            limit = options.max_frames
            copied_images = [0]
            copy_until: list[Optional[int]] = [None]
            total = min(total_images, limit) if limit else total_images
            bar = tqdm(total=total, desc="replay", unit="frame", disable=not progress, dynamic_ncols=True)
            t_read = time.perf_counter()
            try:
                for item in frames:
                    if stop_requested:
                        raise ReplayInterrupted(stop_requested[0])
                    if isinstance(item, PassThrough):
                        if item.topic == options.image_topic:
                            copied_images[0] += 1
                            if limit is not None and copied_images[0] == limit:
                                copy_until[0] = item.log_time_ns + int(options.sync_slop_s * 1e9)
                        if copy_until[0] is not None and (item.log_time_ns > copy_until[0] or (
                                item.topic == options.image_topic and copied_images[0] > limit)):
                            continue  # beyond --max-frames: copy only what the replayed frames used
                        bag_now[0] = max(bag_now[0], item.log_time_ns)
                        writer.write_raw(item.topic, bag_now[0], item.raw)
                        continue
                    frame = item
                    if limit is not None and frame.index >= limit:
                        break
                    stages.add("read+deserialise", (time.perf_counter() - t_read) * 1e3)
                    summary.frames_in += 1
                    current_index[0] = frame.index
                    bag_now[0] = max(bag_now[0], frame.log_time_ns)
                    if first_stamp[0] is None:
                        first_stamp[0] = frame.stamp_ns
                    last_stamp[0] = frame.stamp_ns
                    if len(stamps_seen) < 16:
                        stamps_seen.append(frame.stamp_ns)
                        fps_guess[0] = _stamp_rate(stamps_seen)
                    if frame.problem:
                        skip(frame, frame.problem)
                    else:
                        t0 = time.perf_counter()
                        before = _Counters.of(node)
                        accepted = node.on_image(frame.image, camera_info=frame.camera_info, depth=frame.depth,
                                                 compressed=compressed)
                        if not accepted:
                            skip(frame, _node_reason(node, before))
                        else:
                            pending[id(frame.image)] = frame
                            records = node.process_pending()
                            stages.add("node (convert+engine)", (time.perf_counter() - t0) * 1e3)
                            write_records(records)
                            engine = getattr(node, "engine", None)
                            if engine is not None:
                                lookahead[0] = max(lookahead[0] or 0, int(engine.lookahead_frames))
                            if _Counters.of(node).rejected > before.rejected and id(frame.image) in pending:
                                del pending[id(frame.image)]
                                skip(frame, _node_reason(node, before))
                    if options.diagnostics and (next_diag[0] is None or bag_now[0] >= next_diag[0]):
                        next_diag[0] = bag_now[0] + diag_period_ns
                        writer.write(options.topic(TOPIC_DIAGNOSTICS), bag_now[0],
                                     diagnostics_message(factory, bag_now[0], node.diagnostics(options.image_topic)))
                    t0 = time.perf_counter()
                    writer.checkpoint()
                    stages.add("checkpoint", (time.perf_counter() - t0) * 1e3)
                    bar.update(1)
                    t_read = time.perf_counter()
                # End of the bag: the frames still waiting for look-ahead get their results.
                before = _Counters.of(node)
                write_records(node.flush())
                current_index[0] = summary.frames_in
                _skip_older(summary.frames_in)
                writer.checkpoint()
            except (KeyboardInterrupt, ReplayInterrupted):
                summary.interrupted = True
                summary.frames_pending_at_interrupt = len(pending)
            finally:
                bar.close()
                summary.output_topics = {t: n for t, n in writer.message_counts().items() if t in out_topics}
                writer.close()
                if overlay_writer is not None:
                    overlay_writer.close()
        finally:
            if not writer.closed:
                writer.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)

    summary.wall_s = time.perf_counter() - t_start
    if first_stamp[0] is not None:
        period = 1e9 / fps_guess[0]
        summary.bag_span_s = (last_stamp[0] - first_stamp[0] + period) / 1e9
    summary.real_time_factor = summary.bag_span_s / summary.wall_s if summary.wall_s > 0 else math.inf
    summary.stage_ms = stages.summary()
    summary.lookahead_frames = lookahead[0]
    if delays.count:
        summary.observed_delay_frames = {"mean": delays.total / delays.count, "max": float(delays.largest)}
    evaluation_error: Optional[Exception] = None
    if evaluation is not None:
        try:
            if summary.frames_out and not summary.interrupted:
                summary.evaluation = evaluation.result()
        except (ValueError, OSError) as exc:  # bad ground truth: still write the plot and summary, then say so
            evaluation_error = exc
        finally:
            evaluation.close()
    if overlay_writer is not None and artefacts.overlay_mp4 is not None:
        summary.artefacts["overlay video"] = str(artefacts.overlay_mp4)
    if artefacts.timeline_png is not None:
        title = f"motion timeline: {in_bag.name} {options.image_topic}"
        if model_description:
            title += f"\nmodel: {model_description}"
        timeline.plot(artefacts.timeline_png, title=title)
        summary.artefacts["motion timeline plot"] = str(artefacts.timeline_png)
    if artefacts.summary_json is not None:
        summary.artefacts["summary"] = str(artefacts.summary_json)
        artefacts.summary_json.write_text(summary.to_json())
    if evaluation_error is not None:
        raise ValueError(f"ground-truth evaluation failed: {evaluation_error}; the replay itself completed and its "
                         f"output bag {out_bag} is complete") from evaluation_error
    return summary


@dataclass
class _Status:
    level: int
    name: str
    message: str
    hardware_id: str
    values: dict[str, str]


@dataclass
class _Counters:
    rejected: int
    skipped_frames: int
    dropped_frames: int
    failures: int
    ignored_disabled: int
    duplicates: int

    @classmethod
    def of(cls, node: Any) -> "_Counters":
        c = node.counters
        return cls(*(int(getattr(c, name, 0)) for name in
                     ("rejected", "skipped_frames", "dropped_frames", "failures", "ignored_disabled",
                      "duplicates")))


def _node_reason(node: Any, before: _Counters) -> str:
    """Why the node produced no output for a frame, from what its counters and diagnostics say."""
    now = _Counters.of(node)
    problem = ""
    try:
        problem = node.diagnostics()[0].values.get("last_problem", "")
    except Exception:
        pass
    if now.rejected > before.rejected:
        return f"rejected by the node: {problem}" if problem and problem != "none" else "rejected by the node"
    if now.failures > before.failures:
        return f"engine failure: {problem}"
    if now.ignored_disabled > before.ignored_disabled:
        return "node disabled"
    if now.duplicates > before.duplicates:
        return "same header stamp as the previous image (the node ignores duplicates)"
    if now.dropped_frames > before.dropped_frames:
        return "dropped by the node's overload policy"
    if now.skipped_frames > before.skipped_frames:
        return "not segmented by the engine (context-only frame)"
    return "no output from the node"
