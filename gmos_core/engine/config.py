"""EngineConfig: what the streaming engine does, validated, with the paper's defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from gmos_core.io.stride import stride_from_fps

MODES = ("gmos_s", "gmos_online", "gmos_offline", "geometric")
ANCHORS = ("center", "end")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DISCONTINUITY_POLICIES = ("reset", "raise")
TRACKERS = ("auto", "sam2", "iou")


class EngineConfigError(ValueError):
    """An EngineConfig field has a value the engine cannot use."""


@dataclass
class EngineConfig:
    """Configuration of one StreamingEngine.

    mode:            gmos_s (foreground prob + mask), gmos_online (proposer + causal propagator, MOS-I),
                     gmos_offline (files only: whole-video two-stage propagation, MOS + MOS-I at flush()).
                     geometric (no weights: flow + two-view geometry on the CPU, gmos_core.geometric; options
                     in ``extra["geometric"]``, a GeometricConfig or mapping; both anchors allowed).
    fps:             nominal frame rate of the stream. Sets the frame period used for timestamp matching and,
                     unless ``stride`` is given, the stride max(1, int(fps/8)) (official §7.1). None: estimated
                     from the median interval of the first ``fps_estimation_frames`` frames.
    stride:          window spacing in frames (wins over fps, as in the official code).
    window_size:     frames per Pi3 window (5 for the official weights).
    anchor:          where the segmented frame sits in its window: "center" (official weights, look-ahead of
                     2 strides) or "end" (causal models, no look-ahead). Must equal the models' anchor.
    pixel_limit:     Pi3 pixel budget (official PIXEL_LIMIT 255000).
    device:          torch device string ("cpu", "cuda", "cuda:1", ...).
    precision:       "auto" = CUDA autocast for the encoders (bf16 on compute capability >= 8, else fp16),
                     fp32 on CPU; heads always fp32. "fp32"/"bf16"/"fp16" force the encoder dtype.
    batch_size:      segmented frames processed together (throughput for files; 1 = lowest latency).
    match_tolerance: fraction of the frame period within which a frame counts as "at" a window target time.
    on_discontinuity: "reset" = a timestamp that does not increase, or an image size change, flushes the
                     pending frames and restarts the stream (``on_reset`` callbacks are told why);
                     "raise" = StreamDiscontinuity is raised and the caller decides.
    max_buffered_frames: hard cap on frames held (a safety net; the window alone bounds the buffer).
    tracker:         how gmos_online/gmos_offline turn per-frame proposals into tracks: "sam2" (the SAM 2 video
                     predictor, official), "iou" (gmos_core.tracking.IouTracker: mask IoU + Hungarian matching,
                     needs no trained SAM 2 memory), "auto" = the models' own (sam2 for the official weights,
                     iou for the shipped default model). ``extra["tracker_config"]`` may hold an IouTrackerConfig.
    """

    mode: str = "gmos_online"
    fps: Optional[float] = None
    stride: Optional[int] = None
    window_size: int = 5
    anchor: str = "center"
    pixel_limit: int = 255_000
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 1
    match_tolerance: float = 0.5
    fps_estimation_frames: int = 5
    on_discontinuity: str = "reset"
    max_buffered_frames: int = 256
    top_k: int = 20
    tracker: str = "auto"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> EngineConfigError:
            return EngineConfigError(f"EngineConfig.{name}={getattr(self, name)!r}: expected {expected}")

        if self.mode not in MODES:
            raise bad("mode", f"one of {MODES}")
        if self.anchor not in ANCHORS:
            raise bad("anchor", f"one of {ANCHORS}")
        if self.tracker not in TRACKERS:
            raise bad("tracker", f"one of {TRACKERS}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {PRECISIONS}")
        if self.on_discontinuity not in DISCONTINUITY_POLICIES:
            raise bad("on_discontinuity", f"one of {DISCONTINUITY_POLICIES}")
        if self.fps is not None and not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise bad("fps", "a positive number or None")
        if self.stride is not None and not (isinstance(self.stride, int) and self.stride >= 1):
            raise bad("stride", "an integer >= 1 or None")
        if not (isinstance(self.window_size, int) and self.window_size >= 1 and self.window_size % 2 == 1):
            raise bad("window_size", "an odd integer >= 1")
        if not (isinstance(self.pixel_limit, int) and self.pixel_limit >= 14 * 14):
            raise bad("pixel_limit", "an integer >= 196 (one 14x14 patch)")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise bad("batch_size", "an integer >= 1")
        if not (0.0 < self.match_tolerance <= 1.0):
            raise bad("match_tolerance", "a fraction of the frame period in (0, 1]")
        if not (isinstance(self.fps_estimation_frames, int) and self.fps_estimation_frames >= 2):
            raise bad("fps_estimation_frames", "an integer >= 2")
        if not (isinstance(self.top_k, int) and 1 <= self.top_k <= 255):
            raise bad("top_k", "an integer in 1..255")
        min_buffer = self.window_size * (self.stride or 1) + self.batch_size
        if not (isinstance(self.max_buffered_frames, int) and self.max_buffered_frames >= min_buffer):
            raise bad("max_buffered_frames", f"an integer >= window span + batch size ({min_buffer})")

    @property
    def resolved_stride(self) -> Optional[int]:
        """Stride if it is known before the stream starts (given, or derived from a given fps)."""
        if self.stride is not None:
            return self.stride
        if self.fps is not None:
            return stride_from_fps(self.fps)
        return None

    @property
    def half_window(self) -> int:
        return self.window_size // 2


def head_kind(models) -> str:
    """'gmos_s' or 'proposer': the head the models carry (stand-ins without ``head_kind`` are told by mode)."""
    kind = getattr(models, "head_kind", None)
    if kind is not None:
        return kind
    return "gmos_s" if getattr(models, "mode", None) == "gmos_s" else "proposer"


def resolve_tracker(config: EngineConfig, models) -> str:
    """The tracker a gmos_online/gmos_offline engine uses: the configured one, or for "auto" the models' own
    (``EngineModels.default_tracker``: sam2 for the official weights, iou for the shipped default model)."""
    if config.tracker != "auto":
        return config.tracker
    return getattr(models, "default_tracker", "sam2")
