"""Two-view geometry of one window: dense flow, robust ego-motion per neighbour, independent-motion score.

For the segmented (centre) frame c and every other distinct window member n (its *neighbours*):

1. dense optical flow c → n (OpenCV DIS) at the internal resolution;
2. correspondences on a grid of textured points (cv2.cornerMinEigenVal), excluding the pixels the previous
   frame found moving (flow-warped), so a large moving object does not capture the fit;
3. the camera's motion between c and n, as one of
   - ``static``:     a large share of the textured points does not move (holds even when a moving object
                     covers most of the frame, where a robust fit would lock onto the object);
   - ``homography``: MAGSAC homography (pure rotation, planar scene, or too little parallax to tell): the
                     static prediction of every pixel is H·x;
   - ``essential``:  MAGSAC essential matrix with the intrinsics (camera_info or a focal-length guess),
                     decomposed into R, t (cv2.recoverPose);
   - ``none``:       too few textured points (the frame gets no decision).
4. a per-pixel residual (internal pixels): the part of the observed flow the camera motion does not explain.
   For ``essential`` neighbours every pixel gets ONE inverse depth shared by all of them (the relative
   baselines are estimated from the static points), so a point is static only if a single depth explains its
   motion in every neighbour: the epipolar (Sampson-like) error, depth inconsistency across the window and
   points behind the camera (negative depth, clamped to 0) all show up as residual, while static foreground
   parallax does not. One re-weighting step discounts a neighbour where the pixel is occluded.
5. residual / threshold (max(floor, k·noise), the noise measured on the static points) per neighbour, and
   the smallest over the neighbours kept: a pixel occluded in one neighbour (uncovered background behind a
   moving object, the far side of a depth edge) is read from another, while an independently moving object
   is inconsistent with every neighbour (measured on the rendered scenes: the minimum gave object IoU 0.87-0.90
   and no false positives on the static scene, the mean 0.82-0.85 and 0.5 % static false positives, from
   mask spill behind the object); lightly blurred, mapped to a probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from gmos_core.geometric.config import GeometricConfig

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
BORDER = 3  # internal pixels at the image border not used for fitting (flow is least reliable there)
PROB_SLOPE = 4.0  # logistic slope of the probability in units of the threshold (p = 0.5 at the threshold)


def internal_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """(w, h) of the internal resolution: the source scaled down to about ``pixels`` (never up)."""
    scale = min(1.0, math.sqrt(pixels / float(width * height)))
    return max(16, int(round(width * scale))), max(16, int(round(height * scale)))


def to_gray(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if (gray.shape[1], gray.shape[0]) != tuple(size):
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray


def default_intrinsics(width: int, height: int, focal_ratio: float) -> np.ndarray:
    focal = focal_ratio * max(width, height)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def scale_intrinsics(k: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """K of an image resized from src (w, h) to dst (w, h) (pixel centres at integer coordinates)."""
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    out = np.array(k, dtype=np.float64).copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


@dataclass
class PairGeometry:
    """Camera motion between the centre frame and one neighbour (see the module docstring)."""

    model: str
    side: int  # -1 past, +1 future
    points: int = 0
    inlier_fraction: float = 0.0
    static_fraction: float = 0.0
    homography: Optional[np.ndarray] = None
    rotation: Optional[np.ndarray] = None
    translation: Optional[np.ndarray] = None
    threshold: float = 0.0  # residual threshold (internal pixels)
    # why the window's model was chosen (on the reference pair): "inliers" (the homography's share against
    # planar_fraction), "memory" (the stream showed translation within translation_memory_s), "fallback"
    # (the essential reading did not hold for the static points)
    reason: str = ""
    # on the reference pair of an essential reading: share of its inliers whose motion a rotation alone does not
    # explain (what memory_min_parallax guards)
    parallax_share: float = 0.0

    def summary(self) -> dict:
        return {"model": self.model, "side": self.side, "points": self.points,
                "inlier_fraction": round(self.inlier_fraction, 3), "static_fraction": round(self.static_fraction, 3),
                "threshold_px": round(self.threshold, 3), **({"reason": self.reason} if self.reason else {}),
                **({"parallax_share": round(self.parallax_share, 3)}
                   if self.reason and self.model == "essential" else {})}


@dataclass
class FrameScore:
    """The independent-motion probability of the centre frame and how it was obtained."""

    prob: np.ndarray  # (h, w) float32 at the internal resolution (before temporal smoothing)
    case: str  # "static_camera" | "rotation_or_planar" | "general" | "low_texture" | "unreliable_fit" | "no_neighbours"
    pairs: list[PairGeometry] = field(default_factory=list)
    timings_ms: dict = field(default_factory=dict)

    @property
    def translation_evidence(self) -> bool:
        """The window itself showed a translating camera: it was read with the essential model on its own
        evidence (not from the stream's memory of translation, and not undone by the fallback)."""
        return any(p.model == "essential" and p.reason == "inliers" for p in self.pairs)


class PixelGrid:
    """Per-resolution constants: pixel coordinates, sample grid, normalised rays."""

    def __init__(self, size: tuple[int, int], k: np.ndarray, step: int) -> None:
        w, h = size
        self.size = size
        self.k = k
        self.k_inv = np.linalg.inv(k)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self.xs, self.ys = xs, ys
        self.rays = (self.k_inv @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w, np.float32)])).astype(np.float32)
        gy, gx = np.mgrid[BORDER:h - BORDER:step, BORDER:w - BORDER:step]
        self.sample_flat = (gy * w + gx).ravel()


def dense_flow(dis, gray0: np.ndarray, gray1: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32 flow with gray0(x) ≈ gray1(x + flow(x))."""
    return dis.calc(gray0, gray1, None)


def compose_flows(first: np.ndarray, second: np.ndarray, grid: "PixelGrid") -> np.ndarray:
    """Flow a → c from a → b (``first``) and b → c (``second``): first(x) + second(x + first(x))."""
    return first + cv2.remap(second, grid.xs + first[..., 0], grid.ys + first[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)


def corner_strength(gray: np.ndarray) -> np.ndarray:
    """cv2.cornerMinEigenVal (3x3) of the 0..1 image: how well flow is determined at each pixel."""
    return cv2.cornerMinEigenVal(gray.astype(np.float32) * (1.0 / 255.0), 3)


def texture_confidence(strength: np.ndarray, full: float) -> np.ndarray:
    """Weight in [0, 1] of the motion evidence per pixel: the corner strength averaged over a 7x7 patch (DIS
    patches are 8 px) relative to ``full``. Flow in flat regions is filled in from the surroundings, so its
    residual there says nothing either way."""
    if full <= 0:
        return np.ones_like(strength)
    return np.clip(cv2.blur(strength, (7, 7)) * (1.0 / full), 0.0, 1.0)


def warp_to_center(image: np.ndarray, flow: np.ndarray, grid: PixelGrid, interpolation=cv2.INTER_LINEAR):
    """Sample ``image`` (a map of the neighbour frame) at x + flow(x): the neighbour's map in centre pixels."""
    map_x = grid.xs + flow[..., 0]
    map_y = grid.ys + flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _sampson_px(f: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    x0 = np.concatenate([p0, np.ones((len(p0), 1))], 1)
    x1 = np.concatenate([p1, np.ones((len(p1), 1))], 1)
    fx0 = x0 @ f.T
    ftx1 = x1 @ f
    num = np.sum(x1 * fx0, 1) ** 2
    den = fx0[:, 0] ** 2 + fx0[:, 1] ** 2 + ftx1[:, 0] ** 2 + ftx1[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def _homography(p0: np.ndarray, p1: np.ndarray, threshold: float):
    """MAGSAC homography and its inlier mask (None, all-False when it cannot be fitted)."""
    h, _ = cv2.findHomography(p0, p1, cv2.USAC_MAGSAC, threshold, maxIters=1000, confidence=0.999)
    if h is None:
        return None, np.zeros(len(p0), bool)
    proj = cv2.perspectiveTransform(p0[None], h)[0]
    return h, np.linalg.norm(proj - p1, axis=1) < threshold


def fit_window(p0: np.ndarray, flows_pts: Sequence[np.ndarray], sides: Sequence[int], grid: PixelGrid,
               config: GeometricConfig, max_points: int = 400, force_planar: bool = False,
               prefer_essential: bool = False) -> list[PairGeometry]:
    """The camera motion between the centre and every neighbour (see the module docstring).

    p0: (N, 2) textured sample points; flows_pts: per neighbour their flow (N, 2) (NaN rows: left the image).
    One model for the window: a neighbour where most points stay put is ``static``; among the others the one
    with the largest median flow (the longest baseline) decides between ``homography`` (at least
    ``planar_fraction`` of the points on one homography: rotation, planar scene, negligible parallax) and
    ``essential``. The essential case fits E on that reference pair (MAGSAC, cheirality by recoverPose),
    triangulates the sample points and places the other neighbours by PnP against those points, so every
    neighbour's pose is in ONE reconstruction (fitting E per neighbour would let each pair pick its own
    member of the rotation/translation (bas-relief) ambiguity, and depths would disagree for static points).
    """
    pairs: list[PairGeometry] = []
    moving_pairs: list[int] = []
    stride = max(1, len(p0) // max_points)
    for i, (flow_pts, side) in enumerate(zip(flows_pts, sides)):
        ok = np.isfinite(flow_pts[:, 0])
        n = int(ok.sum())
        if n < config.min_points:
            pairs.append(PairGeometry("none", side, points=n))
            continue
        speed = np.linalg.norm(flow_pts[ok], axis=1)
        static_fraction = float(np.mean(speed < config.static_flow))
        if static_fraction >= config.static_fraction:
            pairs.append(PairGeometry("static", side, points=n, inlier_fraction=static_fraction,
                                      static_fraction=static_fraction, homography=np.eye(3)))
        else:
            pairs.append(PairGeometry("pending", side, points=n, static_fraction=static_fraction))
            moving_pairs.append(i)
    if not moving_pairs:
        return pairs
    thr = config.ransac_threshold
    medians = [float(np.nanmedian(np.linalg.norm(flows_pts[i], axis=1))) for i in moving_pairs]
    ref = moving_pairs[int(np.argmax(medians))]
    sub = np.zeros(len(p0), bool)
    sub[::stride] = True

    def pts(i):
        ok = sub & np.isfinite(flows_pts[i][:, 0])
        return p0[ok], p0[ok] + flows_pts[i][ok], ok

    a0, a1, ref_ok = pts(ref)
    h_ref, h_inliers = _homography(a0, a1, thr)
    planar = h_ref is not None and (force_planar or h_inliers.mean() >= config.planar_fraction)
    reason = "fallback" if force_planar else "inliers"
    if planar and not force_planar and prefer_essential:
        planar, reason = False, "memory"
    pairs[ref].reason = reason

    def read_with_homographies() -> list[PairGeometry]:
        for i in moving_pairs:
            b0, b1, _ = pts(i)
            h, inl = (h_ref, h_inliers) if i == ref else _homography(b0, b1, thr)
            pairs[i].model = "homography" if h is not None else "none"
            pairs[i].homography = h
            pairs[i].inlier_fraction = float(inl.mean()) if len(inl) else 0.0
        return pairs

    if planar:
        return read_with_homographies()
    e, _ = cv2.findEssentialMat(a0, a1, grid.k, method=cv2.USAC_MAGSAC, prob=0.999, threshold=thr, maxIters=1000)
    if e is None or e.shape[0] < 3:
        for i in moving_pairs:
            pairs[i].model = "none"
        return pairs
    e = e[:3]
    f = grid.k_inv.T @ e @ grid.k_inv
    e_inliers = _sampson_px(f, a0, a1) < thr
    chosen = np.flatnonzero(e_inliers)[::max(1, int(e_inliers.sum()) // 150)]  # cheirality needs few points
    _, rotation, translation, _ = cv2.recoverPose(e, a0[chosen], a1[chosen], grid.k)
    translation = translation.ravel()
    # share of the essential inliers whose motion a rotation alone does not explain: the parallax the translation
    # is measured from
    h_rot = grid.k @ rotation @ grid.k_inv
    rot_pred = cv2.perspectiveTransform(a0[e_inliers][None], h_rot)[0]
    parallax_share = float(np.mean(np.linalg.norm(rot_pred - a1[e_inliers], axis=1) > thr)) if e_inliers.any() else 0.0
    pairs[ref].parallax_share = parallax_share
    if reason == "memory" and parallax_share < config.memory_min_parallax:
        # nothing here shows the translation the stream remembers (the camera now only rotates, or stopped):
        # with a free translation the per-pixel depth would explain a moving object away. The reference
        # homography is already fitted (memory applies only where it explained planar_fraction of the points).
        pairs[ref].reason = "fallback"
        return read_with_homographies()
    pairs[ref].model = "essential"
    pairs[ref].rotation = rotation.astype(np.float32)
    pairs[ref].translation = translation.astype(np.float32)
    pairs[ref].inlier_fraction = float(e_inliers.mean())
    # triangulate the reference pair's inliers (inverse depth along the centre rays, |t| = 1 units)
    rays = (grid.k_inv @ np.concatenate([a0, np.ones((len(a0), 1))], 1).T)
    target = (grid.k_inv @ np.concatenate([a1, np.ones((len(a1), 1))], 1).T)[:2]
    a = rotation @ rays
    d = translation[2] * target - translation[:2, None]
    lever = np.sum(d * d, 0)
    rho = np.sum(d * (a[:2] - a[2][None] * target), 0) / np.maximum(lever, 1e-12)
    usable = e_inliers & (rho > 0.05 * np.median(rho[e_inliers])) & (lever > 0.25 * np.median(lever))
    keep = np.flatnonzero(usable)
    keep = keep[::max(1, len(keep) // 200)]  # PnP needs no more
    points3d = (rays[:, keep] / rho[keep][None]).T
    ref_index = np.flatnonzero(ref_ok)[keep]  # positions in p0 of the 3-D points
    for i in moving_pairs:
        if i == ref:
            continue
        flow_i = flows_pts[i][ref_index]
        ok = np.isfinite(flow_i[:, 0])
        if ok.sum() < 6:
            pairs[i].model = "none"
            continue
        image_pts = (p0[ref_index] + flow_i)[ok]
        rvec0, _ = cv2.Rodrigues(rotation)
        found, rvec, tvec, inliers = cv2.solvePnPRansac(
            points3d[ok], image_pts, grid.k, None, rvec=rvec0.copy(), tvec=translation.reshape(3, 1).copy(),
            useExtrinsicGuess=True, iterationsCount=200, reprojectionError=thr, confidence=0.999,
            flags=cv2.SOLVEPNP_ITERATIVE)
        if not found:
            pairs[i].model = "none"
            continue
        pairs[i].model = "essential"
        pairs[i].rotation = cv2.Rodrigues(rvec)[0].astype(np.float32)
        pairs[i].translation = tvec.ravel().astype(np.float32)
        pairs[i].inlier_fraction = float(len(inliers) / ok.sum()) if inliers is not None else 0.0
    return pairs


def _project(a: np.ndarray, b: np.ndarray, rho: np.ndarray) -> np.ndarray:
    num = a[:2] + rho[None] * b[:2, None]
    den = a[2] + rho * b[2]
    return num / np.maximum(den, 1e-3)[None]


def essential_residuals(pairs: Sequence[PairGeometry], targets: Sequence[np.ndarray],
                        grid: PixelGrid) -> list[np.ndarray]:
    """Per-pixel residuals (internal pixels) of the essential neighbours under ONE inverse depth per pixel.

    The poses share one reconstruction (fit_window), so a static point has the same inverse depth rho in
    all of them: for neighbour k the centre ray maps to a_k + rho·t_k (a_k = R_k·ray). Each neighbour's own
    least-squares rho_k (closed form along its epipolar line) is combined, weighted by how many pixels one
    unit of rho moves the point there, then clamped at 0 (behind the camera is not static).
    targets: per neighbour the observed normalised coordinates (2, N) of every centre pixel in it.
    """
    focal = float(0.5 * (grid.k[0, 0] + grid.k[1, 1]))
    rays = grid.rays
    a_list, w_list, rho_list = [], [], []
    for pair, target in zip(pairs, targets):
        a = pair.rotation @ rays
        b = pair.translation
        d = b[2] * target - b[:2, None]
        e = a[:2] - a[2][None] * target
        d2 = np.sum(d * d, 0)
        a_list.append(a)
        w_list.append(d2)
        rho_list.append(np.sum(d * e, 0) / np.maximum(d2, 1e-12))
    residuals = None
    weights = w_list
    for _ in range(2):  # least squares, then one re-weighting step that discounts an occluded neighbour
        rho_bar = np.maximum(sum(w * r for w, r in zip(weights, rho_list)) / (sum(weights) + 1e-12), 0.0)
        residuals = [focal * np.linalg.norm(_project(a, pair.translation, rho_bar) - target, axis=0)
                     for a, pair, target in zip(a_list, pairs, targets)]
        weights = [w / (1.0 + (r / 2.0) ** 2) for w, r in zip(w_list, residuals)]
    return residuals


def _explained(residual: Optional[np.ndarray], samples: np.ndarray, config: GeometricConfig) -> float:
    """Share of the textured sample points (the fit's own points) a model explains within the RANSAC threshold."""
    if residual is None or not len(samples):
        return 1.0
    return float(np.mean(residual[samples] < config.ransac_threshold))


def _dense_residuals(pairs: Sequence[PairGeometry], flows: Sequence[np.ndarray], grid: PixelGrid) -> list:
    """Per pair the residual of every pixel (internal pixels; None for pairs without a model)."""
    residuals: list[Optional[np.ndarray]] = [None] * len(pairs)
    x, y = grid.xs.ravel(), grid.ys.ravel()
    for i, (pair, flow) in enumerate(zip(pairs, flows)):
        if pair.model in ("static", "homography"):
            hm = pair.homography.astype(np.float32)
            den = hm[2, 0] * x + hm[2, 1] * y + hm[2, 2]
            px = (hm[0, 0] * x + hm[0, 1] * y + hm[0, 2]) / den
            py = (hm[1, 0] * x + hm[1, 1] * y + hm[1, 2]) / den
            fl = flow.reshape(-1, 2)
            residuals[i] = np.hypot(x + fl[:, 0] - px, y + fl[:, 1] - py)
    essential = [i for i, p in enumerate(pairs) if p.model == "essential"]
    if essential:
        k_inv = grid.k_inv.astype(np.float32)
        targets = []
        for i in essential:
            fl = flows[i].reshape(-1, 2)
            u, v = x + fl[:, 0], y + fl[:, 1]
            targets.append(np.stack([k_inv[0, 0] * u + k_inv[0, 1] * v + k_inv[0, 2], k_inv[1, 1] * v + k_inv[1, 2]]))
        for i, r in zip(essential, essential_residuals([pairs[i] for i in essential], targets, grid)):
            residuals[i] = r
    return residuals


def score_frame(center: np.ndarray, sides: Sequence[int], flows: Sequence[np.ndarray], grid: PixelGrid,
                config: GeometricConfig, prior_moving: Optional[np.ndarray] = None,
                strength: Optional[np.ndarray] = None, prefer_essential: bool = False) -> FrameScore:
    """Independent-motion probability of the centre frame from its neighbours (see the module docstring).

    sides: per neighbour −1 (past) or +1 (future); flows: centre → neighbour (h, w, 2).
    prior_moving: bool (h, w) pixels believed to move (kept out of the ego-motion fits).
    """
    import time

    h, w = center.shape
    t0 = time.perf_counter()
    if strength is None:
        strength = corner_strength(center)
    textured = strength > config.min_corner_eigen
    usable = textured.ravel()[grid.sample_flat]
    if prior_moving is not None and prior_moving.any():
        grown = cv2.dilate(prior_moving.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        kept = usable & ~grown.ravel()[grid.sample_flat]
        if kept.sum() >= config.min_points:  # a prior covering nearly everything is not trusted
            usable = kept
    samples = grid.sample_flat[usable]
    p0 = np.stack([grid.xs.ravel()[samples], grid.ys.ravel()[samples]], 1).astype(np.float64)
    flows_pts = []
    for flow in flows:
        fp = flow.reshape(-1, 2)[samples].astype(np.float64)
        inside = ((p0[:, 0] + fp[:, 0] >= 0) & (p0[:, 0] + fp[:, 0] <= w - 1) & (p0[:, 1] + fp[:, 1] >= 0)
                  & (p0[:, 1] + fp[:, 1] <= h - 1))
        fp[~inside] = np.nan
        flows_pts.append(fp)
    pairs = fit_window(p0, flows_pts, sides, grid, config, prefer_essential=prefer_essential)
    t_fit = time.perf_counter()
    residuals = _dense_residuals(pairs, flows, grid)
    n_essential = sum(p.model == "essential" for p in pairs)
    if n_essential and (sum(p.model == "none" and p.points >= config.min_points for p in pairs) > n_essential or any(
            p.model == "essential" and _explained(r, samples, config) < config.min_explained
            for p, r in zip(pairs, residuals))):
        # the one-depth reconstruction does not hold for the static points (a baseline too short to
        # triangulate, a wrong pose, PnP failing for most neighbours): read the window with homographies
        # instead of calling everything moving
        pairs = fit_window(p0, flows_pts, sides, grid, config, force_planar=True)
        residuals = _dense_residuals(pairs, flows, grid)
    scores_by_side: dict[int, list[np.ndarray]] = {}
    x, y = grid.xs.ravel(), grid.ys.ravel()
    outside = {}
    for pair, flow in zip(pairs, flows):
        fl = flow.reshape(-1, 2)
        u, v = x + fl[:, 0], y + fl[:, 1]
        outside[id(pair)] = (u < 0) | (u > w - 1) | (v < 0) | (v > h - 1)
    for pair, residual in zip(pairs, residuals):
        if residual is None:
            continue
        if _explained(residual, samples, config) < config.min_explained:
            pair.model = "unreliable"  # most static points unexplained: this neighbour gives no evidence
            continue
        # typical residual of the static points: the median over the sample points the model explains (within
        # the RANSAC threshold), whatever share of the frame a moving object covers
        explained = residual[samples]
        explained = explained[explained < config.ransac_threshold]
        noise = float(np.median(explained)) if len(explained) >= 10 else config.ransac_threshold
        pair.threshold = max(config.residual_floor, config.residual_sigmas * noise)
        normalised = residual / pair.threshold
        # a pixel whose flow leaves the image has no correspondence in this neighbour: no evidence from it
        normalised[outside[id(pair)]] = np.inf
        scores_by_side.setdefault(pair.side, []).append(normalised)
    t_res = time.perf_counter()
    timings = {"ego_motion": 1000.0 * (t_fit - t0), "residual": 1000.0 * (t_res - t_fit)}
    if not scores_by_side:
        case = ("no_neighbours" if not pairs else "unreliable_fit" if any(p.model == "unreliable" for p in pairs)
                else "low_texture")
        return FrameScore(np.zeros((h, w), np.float32), case, pairs, timings)
    score = np.minimum.reduce([s for side in scores_by_side.values() for s in side])
    score[~np.isfinite(score)] = 0.0  # out of view in every neighbour
    score = score.reshape(h, w).astype(np.float32) * texture_confidence(strength, config.texture_full_confidence)
    if config.score_blur > 1:
        score = cv2.blur(score, (config.score_blur, config.score_blur))
    prob = 1.0 / (1.0 + np.exp(-PROB_SLOPE * (score - 1.0)))
    models = {p.model for p in pairs if p.model not in ("none", "unreliable")}
    case = ("static_camera" if models == {"static"} else "rotation_or_planar" if models <= {"static", "homography"}
            else "general")
    timings["residual"] += 1000.0 * (time.perf_counter() - t_res)
    return FrameScore(prob.astype(np.float32), case, pairs, timings)
