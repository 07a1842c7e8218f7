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
    retraining command gives the same data on any machine; the held-out set also crops the other clips).

    The clip is decoded here with OpenCV (not PyAV, which a bare training machine may lack) and handed to the
    generator's texture cache, so every machine decodes the same texture frames the same way."""
    from training.synthetic import _BUNDLED_CLIP, TextureBank

    videos = [_BUNDLED_CLIP]
    key = (tuple(str(v.resolve()) for v in videos), 6, 640)  # TextureBank's defaults (frames_per_video, max_side)
    if key not in TextureBank._cache:
        TextureBank._cache[key] = [f for v in videos for f in _cv2_frames(v, 6, 640)]
    return videos


def _cv2_frames(path, frames_per_video: int, max_side: int) -> list:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    if not frames:
        raise ValueError(f"texture video {path}: no frames decoded; expected a readable video file")
    wanted = np.linspace(0, len(frames) - 1, frames_per_video).astype(int)
    out = []
    for i in sorted(set(wanted.tolist())):
        frame = np.ascontiguousarray(frames[i][..., ::-1])
        scale = min(1.0, max_side / max(frame.shape[:2]))
        if scale < 1.0:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(frame))
    return out


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
