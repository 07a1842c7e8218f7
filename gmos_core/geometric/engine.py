"""The geometric mode behind the StreamingEngine: a weight-free "models" object and a mode handler.

``StreamingEngine`` keeps doing what it does for every mode (windows by timestamp, centred with look-ahead or
end-anchored with none, one FrameResult per pushed frame in push order, resets, eviction); for
``mode="geometric"`` it hands each decided window to :class:`GeometricHandler` instead of running networks.
Per window the handler computes dense flow from the segmented frame to its distinct window members, the
camera's motion and the independent-motion probability (gmos_core.geometric.motion), smooths it with the
previous frame's (flow-warped), cuts it into connected components and tracks them with the IoU tracker
(gmos_core.tracking.IouTracker: ids, moving/static hysteresis). Everything runs at a reduced internal
resolution; labels and probability are brought back to the source size at the end.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from gmos_core.engine.modes import ModeHandler, _window_info, objects_from_labels
from gmos_core.engine.result import FrameResult
from gmos_core.geometric.config import GeometricConfig, UNDECIDED_CASES

GEOMETRIC_DESCRIPTION = "geometric mode (weight-free: OpenCV DIS flow + MAGSAC two-view geometry)"
STAGES = ("flow", "ego_motion", "residual", "tracking", "postprocess", "total")


@dataclass
class GeometricFrameResult(FrameResult):
    """A FrameResult of the geometric mode; ``geometry`` says how the frame was read (for diagnostics and
    debugging; messages and files use only the FrameResult fields; ``fg_prob`` stays None as the contract wants
    for every mode but GMOS-S, so the published mask is ``dynamic_mask``, not a threshold of a probability):
    motion_prob: (H, W) float32 per-pixel independent-motion probability (smoothed) at the source size;
    case ("static_camera" | "rotation_or_planar" | "general" | "low_texture" | "unreliable_fit" |
    "no_neighbours"), per-neighbour
    model and inlier fraction, internal size, where the intrinsics came from, look-ahead in frames."""

    geometry: dict = field(default_factory=dict)
    motion_prob: Optional[np.ndarray] = None


class GeometricModels:
    """What StreamingEngine needs from "models" in geometric mode: no weights, no torch, CPU only.

    anchor / window_size follow the EngineConfig (the method has no trained window, so both anchors work).
    """

    weight_free = True
    random_weights = False
    head_kind = "geometric"
    default_tracker = "iou"
    name = "geometric"
    predictor = None
    pixel_limit = None  # no Pi3 budget: the internal resolution is GeometricConfig.internal_pixels

    def __init__(self, geometric: GeometricConfig, anchor: str = "center", window_size: int = 5) -> None:
        import cv2  # fail here, with the install hint, rather than at the first frame
        import scipy.ndimage  # noqa: F401  imported now (the tracker needs them) so the first frame is not slow
        import scipy.optimize  # noqa: F401

        self.geometric = geometric
        self.mode = "geometric"
        self.anchor = anchor
        self.window_size = window_size
        self.device = "cpu"
        self.description = f"{GEOMETRIC_DESCRIPTION}, OpenCV {cv2.__version__}"


def build_geometric_models(config) -> GeometricModels:
    """GeometricModels for an EngineConfig (``config.extra['geometric']``: GeometricConfig or a mapping)."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:  # pragma: no cover - opencv is a dependency of the geometric extra
        raise ImportError("the geometric mode needs OpenCV: pip install opencv-python-headless "
                          "(or pip install gmos-ros[geometric])") from exc
    geometric = GeometricConfig.from_mapping(config.extra.get("geometric"))
    return GeometricModels(geometric, anchor=config.anchor, window_size=config.window_size)


def intrinsics_from_camera_info(info: Any, width: int, height: int) -> Optional[np.ndarray]:
    """K (3x3) from a sensor_msgs/CameraInfo-like object (field ``k``, row-major 9 values), rescaled when
    the info describes another image size; None when it has no usable calibration (k all zero)."""
    k = getattr(info, "k", None)
    if k is None:
        k = getattr(info, "K", None)
    if k is None:
        return None
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        return None
    k = k.reshape(3, 3).copy()
    info_w, info_h = int(getattr(info, "width", 0) or 0), int(getattr(info, "height", 0) or 0)
    if info_w > 0 and info_h > 0 and (info_w, info_h) != (width, height):
        from gmos_core.geometric.motion import scale_intrinsics

        k = scale_intrinsics(k, (info_w, info_h), (width, height))
    return k


def choose_neighbours(members, center_index: int, limit: int) -> list:
    """Distinct window members other than the centre (edge clamping repeats frames; the centre carries no
    motion), at most ``limit``: the two sides take turns (past/future: occlusions are one-sided), and within a
    side the farthest comes first, then the nearest, and so on (long baselines and a spread of them)."""
    sides: dict[int, list] = {-1: [], 1: []}
    seen = {center_index}
    for member in members:
        index = member.identity.index
        if index not in seen:
            seen.add(index)
            sides[1 if index > center_index else -1].append(member)
    ordered = {}
    for side, group in sides.items():
        group.sort(key=lambda m: -abs(m.identity.index - center_index))
        order = []
        while group:
            order.append(group.pop(0))
            if group:
                order.append(group.pop())
        ordered[side] = order
    chosen = []
    while len(chosen) < limit and (ordered[-1] or ordered[1]):
        for side in (-1, 1):
            if ordered[side] and len(chosen) < limit:
                chosen.append(ordered[side].pop(0))
    return sorted(chosen, key=lambda m: m.identity.index)


class GeometricHandler(ModeHandler):
    """One per stream (a reset makes a new one): flow + geometry per window, smoothing, components, tracks."""

    def __init__(self, config, models) -> None:
        super().__init__(config, models)
        import cv2

        from gmos_core.geometric.motion import DIS_PRESETS
        from gmos_core.tracking import IouTracker, IouTrackerConfig

        self.geo: GeometricConfig = models.geometric
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.geo.flow_preset])
        if self.geo.flow_finest_scale is not None:
            self.dis.setFinestScale(self.geo.flow_finest_scale)
        self.tracker = IouTracker(config.extra.get("tracker_config") or IouTrackerConfig(
            match_iou=self.geo.track_iou, max_missed_frames=self.geo.track_max_age,
            birth_motion=self.geo.candidate_threshold, moving_on=self.geo.moving_enter,
            moving_off=min(self.geo.moving_exit, self.geo.moving_enter - 1e-6),
            min_area_fraction=self.geo.min_area_fraction,
            # re-identification was chosen for the default model (whose masks vanish when an object stops);
            # this mode tracks static candidates too, and on the held-out set re-identification left its mtIoU
            # unchanged (J_mov +0.007) but added false-positive tracks (FP 0.34 -> 0.40), so it keeps its own
            # tracking as tuned in its issue
            reid_distance=0.0))
        self._grid = None
        self._grid_key = None
        self._translation_seen_ns: Optional[int] = None  # stamp of the last window that showed a translating camera
        self._previous: Optional[tuple[int, np.ndarray, np.ndarray]] = None  # (index, gray, smoothed prob)
        self._flows: dict[tuple[int, int], np.ndarray] = {}  # DIS steps between buffered frames, by index
        self.flow_computations = 0

    # ---------------------------------------------------------------- helpers
    def _intrinsics(self, job, width: int, height: int) -> tuple[np.ndarray, str]:
        from gmos_core.geometric.motion import default_intrinsics

        if self.geo.intrinsics is not None:
            fx, fy, cx, cy = self.geo.intrinsics
            return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), "config"
        info = getattr(job.frame.identity.key, "camera_info", None)
        if info is not None:
            k = intrinsics_from_camera_info(info, width, height)
            if k is not None:
                return k, "camera_info"
        guess = default_intrinsics(width, height, self.geo.focal_ratio)
        return guess, f"guess (focal {self.geo.focal_ratio} x max(W, H))"

    def _grid_for(self, k: np.ndarray, width: int, height: int):
        from gmos_core.geometric.motion import PixelGrid, internal_size, scale_intrinsics

        size = internal_size(width, height, self.geo.internal_pixels)
        key = (size, tuple(np.round(k.ravel(), 6)))
        if key != self._grid_key:
            self._grid = PixelGrid(size, scale_intrinsics(k, (width, height), size), self.geo.sample_step)
            self._grid_key = key
        return self._grid

    @staticmethod
    def _gray(member, size) -> np.ndarray:
        """The member's reduced grayscale image, cached on the buffered frame (its ``gray`` slot)."""
        from gmos_core.geometric.motion import to_gray

        cached = member.gray
        if cached is None or cached.shape[::-1] != tuple(size):
            member.gray = to_gray(member.rgb, size)
        return member.gray

    def _step_flow(self, a, b, size) -> np.ndarray:
        """DIS flow between two buffered frames, cached by their indices (each step is used by several
        windows: the step c+s → c+2s of one window is the first step of the next window's future chain)."""
        from gmos_core.geometric.motion import dense_flow

        key = (a.identity.index, b.identity.index)
        flow = self._flows.get(key)
        if flow is None:
            flow = dense_flow(self.dis, self._gray(a, size), self._gray(b, size))
            self._flows[key] = flow
            self.flow_computations += 1
        return flow

    def _chained_flows(self, job, neighbours, size, grid) -> list[np.ndarray]:
        """Centre → each neighbour, composed from steps between consecutive distinct window members (short
        steps keep DIS within its search range: a direct flow across 4 strides loses fast objects)."""
        from gmos_core.geometric.motion import compose_flows

        center = job.frame
        c = center.identity.index
        distinct = {m.identity.index: m for m in job.members if m.identity.index != c}
        wanted = {m.identity.index for m in neighbours}
        out = {}
        for side in (-1, 1):
            chain = sorted((i for i in distinct if (i - c) * side > 0), key=lambda i: abs(i - c))
            previous, flow = center, None
            for index in chain:
                if not any((w - c) * side >= (index - c) * side for w in wanted):
                    break  # no chosen neighbour further out on this side
                step = self._step_flow(previous, distinct[index], size)
                flow = step if flow is None else compose_flows(flow, step, grid)
                if index in wanted:
                    out[index] = flow
                previous = distinct[index]
        # forget steps no later window can use (older than this window's first member)
        oldest = min(m.identity.index for m in job.members)
        for key in [k for k in self._flows if min(k) < oldest]:
            del self._flows[key]
        return [out[m.identity.index] for m in neighbours]

    # ---------------------------------------------------------------- ModeHandler
    def process(self, jobs, head_out, backbone_outs, video_hw):
        return [self._process_job(job, video_hw) for job in jobs]

    def _process_job(self, job, video_hw):
        import cv2

        from gmos_core.geometric.motion import corner_strength, dense_flow, score_frame, warp_to_center
        from gmos_core.tracking import proposals_from_foreground

        height, width = video_hw
        t_start = time.perf_counter()
        k, k_source = self._intrinsics(job, width, height)
        grid = self._grid_for(k, width, height)
        size = grid.size
        center = self._gray(job.frame, size)
        center_index = job.frame.identity.index
        neighbours = choose_neighbours(job.members, center_index, self.geo.max_neighbours)
        t0 = time.perf_counter()
        flows = self._chained_flows(job, neighbours, size, grid)
        sides = [1 if m.identity.index > center_index else -1 for m in neighbours]
        prior = None
        if self._previous is not None and self._previous[0] < center_index:
            prev_index, prev_gray, prev_prob = self._previous
            # flow to the previous segmented frame: a window member's, else the nearest past member's scaled
            # to the time step (constant velocity; the prior only needs to land near the right pixels)
            past = [(center_index - m.identity.index, f) for f, m in zip(flows, neighbours)
                    if m.identity.index < center_index]
            step = center_index - prev_index
            if past:
                gap, nearest = min(past, key=lambda item: abs(item[0] - step))
                flow = nearest if gap == step else nearest * (step / gap)
            else:
                flow = dense_flow(self.dis, center, prev_gray)
            prior = warp_to_center(prev_prob, flow, grid)
        flow_ms = 1000.0 * (time.perf_counter() - t0)
        strength = corner_strength(center)
        textured = strength > self.geo.min_corner_eigen
        stamp_ns = job.frame.identity.stamp_ns
        recent = (self.geo.translation_memory_s > 0 and self._translation_seen_ns is not None
                  and 0 <= stamp_ns - self._translation_seen_ns <= 1e9 * self.geo.translation_memory_s)
        score = score_frame(center, sides, flows, grid, self.geo,
                            prior_moving=None if prior is None else prior > 0.5, strength=strength,
                            prefer_essential=recent)
        if score.translation_evidence:
            self._translation_seen_ns = stamp_ns
        t0 = time.perf_counter()
        prob = score.prob
        undecided = score.case in UNDECIDED_CASES
        if prior is not None and not undecided and self.geo.smoothing > 0:
            prob = (1.0 - self.geo.smoothing) * prob + self.geo.smoothing * prior
        if undecided:
            prob = np.zeros_like(prob)
        self._previous = (center_index, center, prob)
        threshold = self.geo.candidate_threshold
        candidates = cv2.morphologyEx((prob > threshold).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if self.geo.close_gaps > 1:  # parts of one body split by a low-evidence seam (a flat shirt, an elbow)
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.geo.close_gaps, self.geo.close_gaps))
            candidates = cv2.morphologyEx(candidates, cv2.MORPH_CLOSE, kernel)
        if self.geo.fill_holes and candidates.any():
            # a flat object interior has no flow evidence of its own: it belongs to the object around it
            from scipy import ndimage

            filled = ndimage.binary_fill_holes(candidates > 0)
            prob = np.where(filled & (candidates == 0), np.maximum(prob, threshold + 1e-3), prob)
            candidates = filled.astype(np.uint8)
        area = max(1, math.ceil(self.geo.min_area_fraction * size[0] * size[1]))
        proposals = proposals_from_foreground(np.where(candidates > 0, prob, 0.0), threshold,
                                              predicted_iou=0.0, min_area_pixels=area)
        # predicted IoU: how decided the component's pixels are (share above the threshold after opening)
        if len(proposals.masks):
            proposals.ious = np.array([float(np.mean(prob[m] > 0.5)) for m in proposals.masks], np.float32)
        tracked = self.tracker.step(proposals)
        track_ms = 1000.0 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        labels = cv2.resize(tracked.labels, (width, height), interpolation=cv2.INTER_NEAREST)
        moving_ids = [i for i, v in tracked.info.items() if int(v["state"]) == 2]
        dynamic = np.isin(labels, moving_ids) if moving_ids else np.zeros((height, width), bool)
        motion_prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        objects = objects_from_labels(labels, tracked.info)
        post_ms = 1000.0 * (time.perf_counter() - t0)
        timings = {"flow": flow_ms, "ego_motion": score.timings_ms.get("ego_motion", 0.0),
                   "residual": score.timings_ms.get("residual", 0.0), "tracking": track_ms, "postprocess": post_ms}
        timings["total"] = 1000.0 * (time.perf_counter() - t_start)
        stamps, indices = _window_info(job)
        geometry = {"case": score.case, "pairs": [p.summary() for p in score.pairs], "internal_size": list(size),
                    "intrinsics": k_source, "lookahead_frames": max(0, max(indices) - center_index),
                    "textured_fraction": round(float(textured.mean()), 3)}
        return center_index, GeometricFrameResult(
            frame=job.frame.identity, mode="geometric", labels=labels, objects=objects, dynamic_mask=dynamic,
            window_stamps_ns=stamps, window_indices=indices, motion_prob=motion_prob.astype(np.float32),
            timings_ms=timings, geometry=geometry)

    def retained(self) -> dict[str, int]:
        return {"geometric_cached_flows": len(self._flows),
                **{f"tracker_{k}": int(v) for k, v in self.tracker.retained_state_size().items()}}

    def close(self) -> None:
        self._previous = None
        self._translation_seen_ns = None
        self._flows.clear()
