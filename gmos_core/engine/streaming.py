"""StreamingEngine: frames in (with timestamps and identities), one FrameResult per frame out.

Life of a frame (see docs/engine.md):
1. ``push`` validates it, checks for a discontinuity (time going backwards, size change), appends it to the
   window buffer, and queues it as a *pending centre* (``segment=True``) or completes it at once as a
   context-only frame (``segment=False``, ``skipped=True``).
2. A pending centre becomes *decidable* when the newest stamp reaches its last window target time (minus the
   tolerance); its window members are then fixed by timestamp (gmos_core.engine.window).
3. Decidable frames are processed in batches of ``batch_size``: DINOv2 tokens for members that lack them
   (cached on the buffered frame, computed lazily: context-only frames are encoded only when a segmented
   window uses them), the Pi3 decoder per window, one SAM 2 encode per segmented frame (shared by head and
   propagator), the head (fp32), then the mode's post-processing.
4. Results leave in push order, each carrying the identity of the frame it describes.
Buffered frames are evicted as soon as no future window can choose them, so memory is bounded by the window.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from gmos_core.engine.config import EngineConfig, EngineConfigError, head_kind, resolve_tracker
from gmos_core.engine.modes import make_mode_handler
from gmos_core.engine.result import FrameIdentity, FrameResult
from gmos_core.engine.window import decidable, select_window, window_offsets
from gmos_core.io.stride import stride_from_fps

SKIP_CONTEXT_ONLY = "context-only frame (segment=False)"


class StreamDiscontinuity(RuntimeError):
    """The stream cannot continue as one stream (timestamp not increasing, image size changed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class BufferedFrame:
    """A frame held for windowing. ``tokens`` is the DINOv2 cache entry, ``gray`` the geometric mode's reduced
    grayscale image (both filled lazily; the default model's refinement stage uses both)."""

    identity: FrameIdentity
    rgb: np.ndarray
    segment: bool
    tokens: Any = None
    gray: Any = None


@dataclass(eq=False)
class WindowJob:
    """A segmented frame whose window is fixed, waiting for (batched) processing."""

    frame: BufferedFrame
    members: list[BufferedFrame]
    anchor_position: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class StreamingEngine:
    """Streaming GMOS inference. See the module docstring and docs/engine.md.

    ``models`` implements the EngineModels interface (gmos_core.engine.models); its ``anchor`` and
    ``window_size`` must equal the config's (a centre-trained model must not be run end-anchored, or vice
    versa): a mismatch raises EngineConfigError.
    """

    def __init__(self, config: EngineConfig, models, on_reset: Optional[Callable[[str], None]] = None) -> None:
        if getattr(models, "anchor", None) != config.anchor:
            raise EngineConfigError(
                f"EngineConfig.anchor={config.anchor!r} but the models are {getattr(models, 'anchor', None)!r}-"
                f"anchored (a property of the trained weights: the official GMOS weights are 'center'); "
                f"set anchor={getattr(models, 'anchor', None)!r}"
            )
        if getattr(models, "window_size", None) != config.window_size:
            raise EngineConfigError(
                f"EngineConfig.window_size={config.window_size} but the models were trained with "
                f"{getattr(models, 'window_size', None)}-frame windows"
            )
        _check_head_and_tracker(config, models)
        self.config = config
        self.models = models
        self.offsets = window_offsets(config.window_size, config.anchor)
        self.anchor_position = self.offsets.index(0)
        self._on_reset: list[Callable[[str], None]] = [on_reset] if on_reset else []
        self.reset()

    # ------------------------------------------------------------------ public API
    def add_reset_listener(self, callback: Callable[[str], None]) -> None:
        """``callback(reason)`` is called whenever the engine restarts the stream on a discontinuity."""
        self._on_reset.append(callback)

    @property
    def lookahead_frames(self) -> int:
        """Frames that must arrive after a segmented frame before its result is decidable (2 strides for a
        centred 5-frame window; 0 for an end-anchored model). Uses the configured/estimated stride."""
        stride = self._stride or self.config.resolved_stride or 1
        return max(self.offsets) * stride

    @property
    def window_fill(self) -> float:
        """Warm-up progress: frames received since the stream (re)started over the window span (e.g. 13
        frames for stride 3), capped at 1.0. Below 1.0 the windows are still edge-clamped."""
        stride = self._stride or self.config.resolved_stride or 1
        span = (max(self.offsets) - min(self.offsets)) * stride + 1
        return min(1.0, self._next_index / span)

    @property
    def stride(self) -> Optional[int]:
        return self._stride

    @property
    def frame_period_ns(self) -> Optional[float]:
        return self._period_ns

    @property
    def retained(self) -> dict[str, int]:
        """What the engine holds right now (for monitoring and the memory tests)."""
        return {
            "buffered_frames": len(self._buffer),
            "cached_tokens": sum(f.tokens is not None for f in self._buffer),
            "cached_gray": sum(f.gray is not None for f in self._buffer),
            "waiting": len(self._waiting),
            "ready": len(self._ready),
            "unemitted": len(self._order),
            **self._mode.retained(),
        }

    def check_discontinuity(self, rgb: np.ndarray, stamp_ns: int) -> Optional[str]:
        """Why this frame cannot continue the current stream, or None (the node's hook to warn before pushing)."""
        if self._last_stamp is not None and stamp_ns <= self._last_stamp:
            return f"timestamp {stamp_ns} ns is not after the previous frame's {self._last_stamp} ns"
        if self._image_shape is not None and tuple(rgb.shape) != self._image_shape:
            return f"image size changed from {self._image_shape[:2]} to {tuple(rgb.shape[:2])}"
        return None

    def push(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = "", key: Any = None,
             segment: bool = True) -> list[FrameResult]:
        """Add one frame. Returns the results that became available (oldest first, push order)."""
        rgb = _check_rgb(rgb)
        if isinstance(stamp_ns, (bool, float)) or not isinstance(stamp_ns, (int, np.integer)):
            raise TypeError(f"stamp_ns must be an integer number of nanoseconds, got {type(stamp_ns).__name__}")
        stamp_ns = int(stamp_ns)
        emitted: list[FrameResult] = []
        reason = self.check_discontinuity(rgb, stamp_ns)
        if reason is not None:
            if self.config.on_discontinuity == "raise":
                raise StreamDiscontinuity(reason)
            emitted.extend(self.flush())  # ends the old stream: every frame already pushed gets its result
            for callback in self._on_reset:
                callback(reason)
        identity = FrameIdentity(index=self._next_index, stamp_ns=stamp_ns, frame_id=frame_id, key=key)
        self._next_index += 1
        self._last_stamp = stamp_ns
        self._image_shape = tuple(rgb.shape)
        if self._period_ns is None:
            self._first_stamps.append(stamp_ns)
        frame = BufferedFrame(identity, rgb, segment)
        self._buffer.append(frame)
        self._order.append(identity.index)
        if segment:
            self._waiting.append(frame)
        else:
            self._done[identity.index] = self._skipped_result(identity, SKIP_CONTEXT_ONLY)
        self._update_period()
        self._promote_decidable(final=False)
        self._process_ready(final=False)
        self._evict()
        emitted.extend(self._emit())
        return emitted

    def flush(self) -> list[FrameResult]:
        """End of stream: decide all pending windows (clamped at the last frame), finish the mode (offline:
        the whole-video two-stage propagation), emit everything, and start a fresh stream."""
        if self._period_ns is None and self._buffer:
            self._update_period(final=True)
        self._promote_decidable(final=True)
        self._process_ready(final=True)
        for index, result in self._mode.finish():
            self._done[index] = result
        emitted = self._emit()
        if self._order:
            raise RuntimeError(f"internal error: frames {list(self._order)[:5]}... have no result after flush")
        self._reset_stream()
        return emitted

    def reset(self) -> None:
        """Forget the stream (pending frames are dropped without results; call flush() first to keep them)."""
        self._reset_stream()

    # ------------------------------------------------------------------ internals
    def _reset_stream(self) -> None:
        self._buffer: deque[BufferedFrame] = deque()
        self._waiting: deque[BufferedFrame] = deque()
        self._ready: deque[WindowJob] = deque()
        self._order: deque[int] = deque()
        self._done: dict[int, FrameResult] = {}
        self._next_index = 0
        self._last_stamp: Optional[int] = None
        self._image_shape: Optional[tuple] = None
        self._period_ns: Optional[float] = 1e9 / self.config.fps if self.config.fps else None
        self._stride: Optional[int] = self.config.resolved_stride
        self._first_stamps: list[int] = []
        self._pi3_size: Optional[tuple[int, int]] = None
        if getattr(self, "_mode", None) is not None:
            self._mode.close()
        self._mode = make_mode_handler(self.config, self.models)

    def _update_period(self, final: bool = False) -> None:
        """Without a configured fps: estimate the frame period from the first frames' median interval."""
        if self._period_ns is not None:
            return
        enough = len(self._first_stamps) >= self.config.fps_estimation_frames
        if not (enough or final):
            return
        intervals = np.diff(self._first_stamps)
        self._period_ns = float(statistics.median(intervals)) if len(intervals) else 1e9 / 30.0
        if self._stride is None:
            self._stride = stride_from_fps(1e9 / self._period_ns)

    def _promote_decidable(self, final: bool) -> None:
        if self._period_ns is None or not self._waiting:
            return
        stamps = [f.identity.stamp_ns for f in self._buffer]
        newest = stamps[-1]
        position = {id(f): i for i, f in enumerate(self._buffer)}
        while self._waiting:
            frame = self._waiting[0]
            if not final and not decidable(newest, frame.identity.stamp_ns, self._period_ns, self._stride,
                                           self.offsets, self.config.match_tolerance):
                break
            self._waiting.popleft()
            members = select_window(stamps, position[id(frame)], self._period_ns, self._stride, self.offsets,
                                    self.config.match_tolerance)
            self._ready.append(WindowJob(frame, [self._buffer[m] for m in members], self.anchor_position))

    def _promote_oldest_now(self) -> None:
        frame = self._waiting.popleft()
        stamps = [f.identity.stamp_ns for f in self._buffer]
        members = select_window(stamps, 0, self._period_ns or 1.0, self._stride or 1, self.offsets,
                                self.config.match_tolerance)
        self._ready.append(WindowJob(frame, [self._buffer[m] for m in members], self.anchor_position))

    def _process_ready(self, final: bool) -> None:
        while self._ready and (len(self._ready) >= self.config.batch_size or final):
            jobs = [self._ready.popleft() for _ in range(min(self.config.batch_size, len(self._ready)))]
            for index, result in self._run_batch(jobs):
                self._done[index] = result

    def _run_batch(self, jobs: list[WindowJob]):
        if getattr(self.models, "weight_free", False):  # geometric mode: its handler does all the work
            return self._mode.process(jobs, None, None, jobs[0].frame.rgb.shape[:2])
        import torch

        models = self.models
        sync = torch.cuda.synchronize if models.device.type == "cuda" else (lambda: None)
        height, width = jobs[0].frame.rgb.shape[:2]
        if self._pi3_size is None:
            self._pi3_size = models.pi3_target_size(width, height, self.config.pixel_limit)
        pi3_h, pi3_w = self._pi3_size
        timings: dict[str, float] = {}
        t_start = time.perf_counter()

        # DINOv2 tokens for members not cached yet (first occurrence order, as the official cache).
        missing: list[BufferedFrame] = []
        for job in jobs:
            for member in job.members:
                if member.tokens is None and all(member is not m for m in missing):
                    missing.append(member)
        t0 = time.perf_counter()
        if missing:
            images = models.pi3_inputs([m.rgb for m in missing], (pi3_h, pi3_w))
            tokens = models.encode_tokens(images)
            for member, token in zip(missing, tokens):
                member.tokens = token
        sync()
        timings["pi3_encoder"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        hidden = torch.stack([m.tokens for job in jobs for m in job.members])
        feature = models.decode_anchor(hidden, len(self.offsets), pi3_h, pi3_w, self.anchor_position)
        sync()
        timings["pi3_decoder"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        backbone_outs = models.sam_encode(models.sam_inputs([job.frame.rgb for job in jobs]))
        sam_btn, high_res = models.sam_head_inputs(backbone_outs)
        sync()
        timings["sam2_encoder"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        head_out = models.run_head(feature, sam_btn, high_res)
        sync()
        timings["head"] = time.perf_counter() - t0
        batch_ms = {k: 1000.0 * v / len(jobs) for k, v in timings.items()}
        prep_ms = 1000.0 * (time.perf_counter() - t_start) / len(jobs) - sum(batch_ms.values())

        for job in jobs:
            job.timings_ms = dict(batch_ms)
            job.timings_ms["preprocess"] = max(0.0, prep_ms)
        return self._mode.process(jobs, head_out, backbone_outs, (height, width))

    def _evict(self) -> None:
        """Drop frames that no future window can choose (older than the earliest pending window's first
        target minus the tolerance), and keep the buffer under its hard cap."""
        if self._period_ns is not None:
            anchor = self._waiting[0].identity.stamp_ns if self._waiting else self._last_stamp + 1
            oldest_needed = anchor + (min(self.offsets) * self._stride - self.config.match_tolerance) * self._period_ns
            while self._buffer and self._buffer[0].identity.stamp_ns < oldest_needed:
                self._buffer.popleft()
        while len(self._buffer) > self.config.max_buffered_frames:
            # Safety net (e.g. a stream far faster than the configured fps): a pending frame about to leave
            # the buffer has its window decided now, from what is buffered.
            if self._waiting and self._buffer[0] is self._waiting[0]:
                self._promote_oldest_now()
            self._buffer.popleft()
        self._process_ready(final=False)

    def _emit(self) -> list[FrameResult]:
        out = []
        while self._order and self._order[0] in self._done:
            out.append(self._done.pop(self._order.popleft()))
        return out

    def _skipped_result(self, identity: FrameIdentity, reason: str) -> FrameResult:
        height, width = self._image_shape[:2]
        return FrameResult(frame=identity, mode=self.config.mode, labels=np.zeros((height, width), np.uint16),
                           dynamic_mask=np.zeros((height, width), bool), skipped=True, skip_reason=reason)


def run_clip(config: EngineConfig, models, frames) -> list[FrameResult]:
    """Every frame of an in-memory clip through a fresh StreamingEngine, stamped at ``config.fps``: one
    FrameResult per frame, in frame order (offline scripts: benchmarks, training data)."""
    if not config.fps:
        raise ValueError("run_clip needs EngineConfig.fps to stamp the frames")
    engine = StreamingEngine(config, models)
    period = int(round(1e9 / config.fps))
    results = []
    for i, rgb in enumerate(frames):
        results.extend(engine.push(rgb, i * period))
    results.extend(engine.flush())
    results.sort(key=lambda r: r.frame.index)
    if len(results) != len(frames):
        raise RuntimeError(f"engine returned {len(results)} results for {len(frames)} frames")
    return results


def _check_head_and_tracker(config: EngineConfig, models) -> None:
    """The mode needs a head the models have, and a tracker they can run (EngineConfigError otherwise)."""
    if config.mode not in ("gmos_s", "gmos_online", "gmos_offline"):
        return  # modes without a learned head check their own needs
    kind = head_kind(models)
    described = getattr(models, "description", "") or "the models"
    if config.mode == "gmos_s":
        if kind != "gmos_s":
            raise EngineConfigError(f"EngineConfig.mode='gmos_s' needs a GMOS-S head, but {described} has a "
                                    f"{kind} head; use mode gmos_online")
        return
    tracker = resolve_tracker(config, models)
    if tracker == "sam2" and kind != "proposer":
        raise EngineConfigError(f"EngineConfig.tracker='sam2' tracks proposer proposals, but {described} has a "
                                f"{kind} head; use tracker 'iou' (or 'auto')")
    if tracker == "sam2" and not getattr(models, "sam2_memory_trained", True):
        raise EngineConfigError(f"EngineConfig.tracker='sam2' needs the SAM 2 video-memory weights of the official "
                                f"checkpoint, which {described} does not have; use tracker 'iou' (or 'auto')")


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"push: expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"push: expected uint8 pixels, got {rgb.dtype}")
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"push: image {rgb.shape[:2]} is too small")
    return rgb
