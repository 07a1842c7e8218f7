"""Edge snapping: the last step of the default model's refinement stage (not part of the official GMOS).

The refined foreground probability is computed at 240x136 from a head whose own grid is 64x64, so its borders are
blurred over several source pixels; MOS-I counts a (frame, object) pair only from IoU 0.5 up to 0.95, so blurred
borders cost most of the score. A guided filter (He, Sun, Tang, "Guided Image Filtering", 2010/2013) fits, in
every window of the frame, the probability as a linear function of the frame's colour, and averages the fits:
the output follows the colour edges of the frame wherever the probability changes within a window, and is the
probability itself in flat regions. The fast variant computes the linear coefficients on a reduced grid and
applies them to the full-resolution frame, so the cost hardly grows with the input size.

The filtered map is then mapped back to a probability whose 0.5 level is the chosen threshold (piecewise linear,
monotone): downstream code keeps the contract ``mask = prob > 0.5``.

Settings (``EdgeSnapConfig``) were chosen on the VALIDATION split of the synthetic generator (seeds 960000+) with
``benchmarks/tracker_sweep.py``; docs/default_model.md lists the sweep.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np


class EdgeSnapConfigError(ValueError):
    """An EdgeSnapConfig field has a value the edge-snapping step cannot use."""


@dataclass(frozen=True)
class EdgeSnapConfig:
    """enabled:          run the step (the default model's refinement stage runs it; off = the refiner's map).
    radius_fraction:     guided-filter window radius as a fraction of the frame's shorter side (0.09: 24 px at
                         480x272).
    eps:                 regularisation of the per-window linear fit (colour in [0, 1]); larger = smoother, less
                         edge-following.
    grid_short_side:     the fit's coefficients are computed with the frame's shorter side reduced to this many
                         pixels (never enlarged), then applied at full resolution (68: a quarter of 272).
    threshold:           the filtered value that becomes 0.5 in the output probability (the mask threshold).
    """

    enabled: bool = True
    radius_fraction: float = 0.09
    eps: float = 1e-3
    grid_short_side: int = 68
    threshold: float = 0.4

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> EdgeSnapConfigError:
            return EdgeSnapConfigError(f"EdgeSnapConfig.{name}={getattr(self, name)!r}: expected {expected}")

        if not isinstance(self.enabled, bool):
            raise bad("enabled", "a bool")
        for name, low, high in (("radius_fraction", 0.0, 1.0), ("eps", 0.0, 10.0), ("threshold", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value < high):
                raise bad(name, f"a number in ({low:g}, {high:g})")
        if isinstance(self.grid_short_side, bool) or not isinstance(self.grid_short_side, int) \
                or self.grid_short_side < 8:
            raise bad("grid_short_side", "an integer >= 8")

    @classmethod
    def from_mapping(cls, values: Optional[dict]) -> "EdgeSnapConfig":
        """From a {name: value} mapping (e.g. EngineConfig.extra['edge_snap']), an EdgeSnapConfig, or None for the
        defaults; unknown names are an error (as GeometricConfig.from_mapping)."""
        if values is None:
            return cls()
        if isinstance(values, cls):
            return values
        if not isinstance(values, dict):
            raise TypeError(f"EngineConfig.extra['edge_snap']={values!r}: expected an EdgeSnapConfig or a mapping of "
                            "its fields")
        names = sorted(f.name for f in fields(cls))
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise TypeError(f"EngineConfig.extra['edge_snap']: unknown field(s) {unknown}; expected some of {names}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: float = 1.0) -> np.ndarray:
    """Guided filter of ``src`` (H, W) by ``guide`` (H, W, C) or (H, W), both float in about [0, 1].

    Per (2 radius + 1)^2 window: src ~ a . guide + b (least squares with ridge ``eps``); output = the windows'
    averaged a . guide + averaged b. With ``subsample`` > 1, a and b are computed on the inputs area-reduced by that
    factor (radius reduced too) and bilinearly enlarged before being applied to the full-size guide (the "fast
    guided filter", He & Sun 2015).
    """
    import cv2

    full_guide = np.asarray(guide, np.float32)
    if full_guide.ndim == 2:
        full_guide = full_guide[..., None]
    src = np.asarray(src, np.float32)
    if full_guide.shape[:2] != src.shape:
        raise ValueError(f"guided_filter: guide {full_guide.shape[:2]} and src {src.shape} must have the same size")
    height, width = src.shape
    channels = full_guide.shape[2]
    small_guide, small_src = full_guide, src
    if subsample > 1.0:
        size = (max(1, round(width / subsample)), max(1, round(height / subsample)))
        small_guide = cv2.resize(full_guide, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], channels)
        small_src = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        radius = max(1, round(radius / subsample))
    kernel = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.blur(x, kernel, borderType=cv2.BORDER_REFLECT)

    mean_i = np.stack([box(small_guide[..., k]) for k in range(channels)], -1)
    mean_p = box(small_src)
    cov_ip = np.stack([box(small_guide[..., k] * small_src) for k in range(channels)], -1) - mean_i * mean_p[..., None]
    var = np.empty(small_src.shape + (channels, channels), np.float32)
    for i in range(channels):
        for j in range(i, channels):
            var[..., i, j] = var[..., j, i] = box(small_guide[..., i] * small_guide[..., j]) - mean_i[..., i] * mean_i[..., j]
    var += eps * np.eye(channels, dtype=np.float32)
    a = np.linalg.solve(var, cov_ip[..., None])[..., 0]
    b = mean_p - (a * mean_i).sum(-1)
    out = box(b)
    if subsample > 1.0:
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    for k in range(channels):  # per channel (not a sum over a last axis): 3x faster at 480x272
        mean_a = box(np.ascontiguousarray(a[..., k]))
        if subsample > 1.0:
            mean_a = cv2.resize(mean_a, (width, height), interpolation=cv2.INTER_LINEAR)
        out += mean_a * full_guide[..., k]
    return out


def threshold_to_half(values: np.ndarray, threshold: float) -> np.ndarray:
    """Monotone piecewise-linear map of [0, 1] onto itself sending ``threshold`` to 0.5 (values clipped first)."""
    values = np.clip(values, 0.0, 1.0)
    low = values * (0.5 / threshold)
    high = 0.5 + (values - threshold) * (0.5 / (1.0 - threshold))
    return np.where(values <= threshold, low, high).astype(np.float32)


def snap_to_edges(rgb: np.ndarray, prob: np.ndarray, config: EdgeSnapConfig) -> np.ndarray:
    """(H, W) probability following the colour edges of the uint8 RGB frame ``rgb`` (H, W, 3); see module doc."""
    if not config.enabled:
        return np.asarray(prob, np.float32)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != np.shape(prob):
        raise ValueError(f"snap_to_edges: expected an (H, W, 3) frame the size of the probability {np.shape(prob)}, "
                         f"got {rgb.shape}")
    short = min(rgb.shape[:2])
    radius = max(1, round(config.radius_fraction * short))
    subsample = max(1.0, short / config.grid_short_side)
    filtered = guided_filter(rgb.astype(np.float32) / 255.0, prob, radius, config.eps, subsample)
    return threshold_to_half(filtered, config.threshold)
