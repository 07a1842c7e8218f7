"""GeometricConfig: the weight-free geometric mode's parameters, validated, with measured defaults.

Pixel quantities are at the *internal* resolution (the source frame scaled to ``internal_pixels``), which is
what the flow and the fits see; docs/geometric.md says how each default was chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

FLOW_PRESETS = ("ultrafast", "fast", "medium")


class GeometricConfigError(ValueError):
    """A GeometricConfig field has a value the geometric mode cannot use."""


# FrameScore.case values on which the mode makes no decision: its probability is all zeros there (in this module,
# which needs no OpenCV, so the refinement stage can name them before it checks for OpenCV)
UNDECIDED_CASES = frozenset({"low_texture", "unreliable_fit", "no_neighbours"})


@dataclass
class GeometricConfig:
    """Parameters of the geometric (weight-free) motion segmentation.

    internal_pixels:      frames are reduced to about this many pixels before anything else (speed; 240x136
                          for a 480x272 stream). Never enlarged.
    flow_preset:          OpenCV DIS optical-flow preset (ultrafast | fast | medium).
    flow_finest_scale:    DIS finest pyramid level (0 = the internal resolution; None = the preset's, 2 for
                          ultrafast/fast). The presets stop at level 2 (patches of 8 px at quarter resolution =
                          32 internal px), which spreads motion far past object edges and loses small objects;
                          level 0 with the ultrafast preset measured best per CPU ms (docs/geometric.md).
    max_neighbours:       flow is computed to at most this many distinct window members (both sides of a
                          centred window first, far before near); each costs one DIS flow.
    intrinsics:           (fx, fy, cx, cy) in source pixels; None = camera_info when the frame carries one
                          (the node and replay), else a guess with focal ``focal_ratio`` x max(W, H).
    focal_ratio:          the focal-length guess for sources without calibration (0.9 ~ a 58 deg horizontal
                          field of view on a 16:9 image).
    sample_step:          grid step (internal pixels) of the correspondences the ego-motion is fitted to.
    min_corner_eigen:     a sample point needs this much texture (cv2.cornerMinEigenVal, 3x3, on 0..1 images).
    min_points:           fewer textured points than this: the frame is "low_texture" (no decision).
    texture_full_confidence: corner strength (7x7 mean) at which a pixel's motion evidence counts fully; below
                          it the evidence is scaled down (flat regions: flow is interpolated). 0 = off.
    ransac_threshold:     MAGSAC inlier threshold (internal pixels).
    min_explained:        a camera model that explains (within ransac_threshold) fewer than this share of the
                          textured points is not used: the one-depth model falls back to homographies, and a
                          neighbour still below it gives no evidence (never "the whole frame moves").
    planar_fraction:      the homography model (pure rotation, planar scene, negligible parallax) is used when
                          at least this fraction of the textured points of the longest-baseline neighbour lies
                          on one homography; otherwise the essential (translating camera) model.
    translation_memory_s: seconds for which a stream that showed a translating camera (a window read with the
                          essential model on its own evidence) keeps reading windows with the essential model even
                          where a homography explains ``planar_fraction`` of the points: a handheld or driving
                          camera keeps translating, and its far background fits a homography while nearer static
                          objects show parallax, which the homography calls motion. A camera that only rotates
                          never shows that evidence (its only outliers are the moving objects), and one that stops
                          translating is read with homographies again after this long. 0 = off.
    memory_min_parallax:  ... as long as at least this share of the essential model's inliers moves in a way a
                          rotation alone does not explain (parallax); below it the window is read with
                          homographies (a camera that stopped translating and now only rotates: with a free
                          translation the per-pixel depth would explain a moving object away).
    static_flow:          flow below this (internal pixels) counts as "not moving" for the static-camera test.
    static_fraction:      the camera is taken as static when at least this fraction of the textured points
                          does not move (holds even when a moving object covers most of the frame).
    residual_floor:       independent motion below this residual (internal pixels) is never called moving.
    residual_sigmas:      ... nor below this many robust standard deviations of the static points' residual.
    score_blur:           box filter (pixels, odd; 1 = none) on the normalised residual before the probability
                          (DIS flow noise is per patch; a wide blur grows masks past the object's edge).
    smoothing:            weight of the previous frame's (flow-warped) probability in the temporal smoothing.
    candidate_threshold:  probability above which pixels form candidate objects (connected components).
    min_area_fraction:    candidate components smaller than this fraction of the frame are dropped.
    fill_holes:           enclosed holes of a candidate component are part of it (flat interiors).
    close_gaps:           morphological closing (elliptic kernel, internal pixels; 1 = none) joining parts of one
                          body before the components are cut.
    moving_enter / moving_exit: hysteresis of a track's motion probability (becomes MOVING above enter,
                          stays MOVING until below exit).
    track_iou:            a component continues a track when their (flow-warped) masks overlap by this IoU.
    track_max_age:        frames a track survives without a matching component.
    """

    internal_pixels: int = 240 * 136
    flow_preset: str = "ultrafast"
    flow_finest_scale: Optional[int] = 0
    max_neighbours: int = 4
    intrinsics: Optional[tuple[float, float, float, float]] = None
    focal_ratio: float = 0.9
    sample_step: int = 4
    min_corner_eigen: float = 1e-4
    min_points: int = 40
    texture_full_confidence: float = 2e-4
    ransac_threshold: float = 1.0
    min_explained: float = 0.3
    planar_fraction: float = 0.8
    translation_memory_s: float = 1.0
    memory_min_parallax: float = 0.15
    static_flow: float = 0.2
    static_fraction: float = 0.15
    residual_floor: float = 1.0
    residual_sigmas: float = 3.0
    score_blur: int = 3
    smoothing: float = 0.4
    candidate_threshold: float = 0.5
    min_area_fraction: float = 0.003
    fill_holes: bool = True
    close_gaps: int = 7
    moving_enter: float = 0.6
    moving_exit: float = 0.45
    track_iou: float = 0.2
    track_max_age: int = 5

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> GeometricConfigError:
            return GeometricConfigError(f"GeometricConfig.{name}={getattr(self, name)!r}: expected {expected}")

        if not (isinstance(self.internal_pixels, int) and self.internal_pixels >= 32 * 32):
            raise bad("internal_pixels", "an integer >= 1024")
        if self.flow_preset not in FLOW_PRESETS:
            raise bad("flow_preset", f"one of {FLOW_PRESETS}")
        if self.flow_finest_scale is not None and not (isinstance(self.flow_finest_scale, int)
                                                       and 0 <= self.flow_finest_scale <= 4):
            raise bad("flow_finest_scale", "None or an integer in 0..4")
        if self.intrinsics is not None:
            values = tuple(self.intrinsics)
            if len(values) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) \
                    or values[0] <= 0 or values[1] <= 0:
                raise bad("intrinsics", "None or (fx, fy, cx, cy) with positive focal lengths")
            self.intrinsics = tuple(float(v) for v in values)
        for name in ("focal_ratio", "ransac_threshold", "residual_floor", "residual_sigmas"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise bad(name, "a positive number")
        for name in ("planar_fraction", "memory_min_parallax", "static_fraction", "min_explained",
                     "candidate_threshold", "moving_enter", "moving_exit", "track_iou"):
            if not (0.0 < getattr(self, name) <= 1.0):
                raise bad(name, "a fraction in (0, 1]")
        if not (isinstance(self.translation_memory_s, (int, float)) and math.isfinite(self.translation_memory_s)
                and self.translation_memory_s >= 0):
            raise bad("translation_memory_s", "a number of seconds >= 0")
        if not (0.0 <= self.smoothing < 1.0):
            raise bad("smoothing", "a weight in [0, 1)")
        if not (0.0 <= self.min_area_fraction < 1.0):
            raise bad("min_area_fraction", "a fraction in [0, 1)")
        if not (0.0 <= self.static_flow):
            raise bad("static_flow", "a flow magnitude >= 0 (internal pixels)")
        if not (0.0 <= self.texture_full_confidence):
            raise bad("texture_full_confidence", "a number >= 0")
        if not (0.0 <= self.min_corner_eigen):
            raise bad("min_corner_eigen", "a number >= 0")
        if not (isinstance(self.close_gaps, int) and self.close_gaps >= 1):
            raise bad("close_gaps", "an integer >= 1")
        if not (isinstance(self.score_blur, int) and self.score_blur >= 1 and self.score_blur % 2 == 1):
            raise bad("score_blur", "an odd integer >= 1")
        for name, low in (("sample_step", 1), ("min_points", 8), ("track_max_age", 0), ("max_neighbours", 1)):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= low):
                raise bad(name, f"an integer >= {low}")
        if self.moving_exit > self.moving_enter:
            raise GeometricConfigError(f"GeometricConfig.moving_exit={self.moving_exit} is above moving_enter="
                                       f"{self.moving_enter}; expected exit <= enter (hysteresis)")

    @classmethod
    def from_mapping(cls, values: Optional[dict]) -> "GeometricConfig":
        """From a {name: value} mapping (e.g. EngineConfig.extra['geometric']); unknown names are an error."""
        if values is None:
            return cls()
        if isinstance(values, cls):
            return values
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise GeometricConfigError(f"unknown geometric option(s) {unknown}; expected names from {sorted(names)}")
        return cls(**values)
