"""Training clips for the default model, rendered with the project's synthetic generator
(``training/synthetic.py``: layered planar scenes, moving camera with parallax, stop-and-go objects,
static-scene and static-camera clips, real-video and procedural textures).

``render_pool_clip(cfg, seed)`` renders one whole clip at ``render_width x render_height``; ``Clip.moving_mask(t)``
is the training target of frame t: the pixels of the objects moving at t (objects that are annotated but
stopped at t are background for GMOS-S, as in MOS).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Clip:
    frames: np.ndarray   # (T, H, W, 3) uint8
    labels: np.ndarray   # (T, H, W) uint8 object ids (0 = not annotated)
    moving: np.ndarray   # (T, n_ids) bool: id k+1 moving at frame t
    kind: str

    def moving_mask(self, t: int) -> np.ndarray:
        ids = np.flatnonzero(self.moving[t]) + 1
        if ids.size == 0:
            return np.zeros(self.labels.shape[1:], bool)
        return np.isin(self.labels[t], ids)


def training_texture_videos() -> list:
    """Real-video textures of the training clips: the bundled demo clip only (it ships with the package, so the
    retraining command gives the same data on any machine; the held-out set also crops the other clips)."""
    from training.synthetic import _BUNDLED_CLIP

    return [_BUNDLED_CLIP]


def synthetic_config(cfg, num_frames: int | None = None):
    from training.synthetic import SyntheticConfig

    p_static = float(cfg.static_clip_fraction)
    p_cam = float(cfg.static_camera_fraction)
    return SyntheticConfig(width=int(cfg.render_width), height=int(cfg.render_height),
                           num_frames=int(num_frames or cfg.clip_frames), fps=24.0,
                           p_static_scene=p_static, p_static_camera=p_cam,
                           texture_videos=training_texture_videos())


def render_pool_clip(cfg, seed: int) -> Clip:
    from training.synthetic import render_sequence, sample_scene

    scene = sample_scene(int(seed), synthetic_config(cfg))
    frames, labels = render_sequence(scene)
    return Clip(frames, labels, scene.moving_matrix(), scene.kind)
