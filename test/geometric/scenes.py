"""Rendered test scenes: textured fronto-parallel planes seen by a pinhole camera (numpy + cv2 only).

Each plane is a textured rectangle at a fixed depth in world coordinates (z forward, x right, y down);
an optional velocity moves it independently of the camera. A frame is rendered by warping every plane's
texture with its plane-induced homography (texture → image) and compositing far to near, so parallax,
occlusion and independent motion are exact, and the ground-truth mask of the moving plane is the part of it
that is visible after compositing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

WIDTH, HEIGHT = 480, 272
FOCAL = 400.0


def intrinsics(width: int = WIDTH, height: int = HEIGHT, focal: float = FOCAL) -> np.ndarray:
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth multi-scale colour noise (trackable by optical flow at every scale)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), np.float32)
    for octave, weight in ((4, 1.0), (8, 0.8), (16, 0.6), (48, 0.4)):
        small = rng.random((max(2, height // octave), max(2, width // octave), 3)).astype(np.float32)
        out += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    out -= out.min()
    out *= 255.0 / max(out.max(), 1e-6)
    return out.clip(0, 255).astype(np.uint8)


@dataclass
class Plane:
    depth: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    seed: int
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world units per frame (independent motion)
    moving: bool = False  # counted in the ground-truth mask
    texels_per_unit: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.texels_per_unit:
            self.texels_per_unit = FOCAL / self.depth  # about one texel per pixel at the start
        w = max(4, int((self.x_range[1] - self.x_range[0]) * self.texels_per_unit))
        h = max(4, int((self.y_range[1] - self.y_range[0]) * self.texels_per_unit))
        self.image = texture(h, w, self.seed)


def rotation(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """World → camera rotation for a camera turned by yaw (about y), pitch (about x), roll (about z)."""
    r, _ = cv2.Rodrigues(np.radians([pitch_deg, yaw_deg, roll_deg]).reshape(3, 1))
    return r.T


def render(planes: list[Plane], frame: int, camera_center: np.ndarray, camera_rotation: np.ndarray,
           k: np.ndarray = None, size: tuple[int, int] = (WIDTH, HEIGHT)) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (H, W, 3), ground-truth moving mask bool (H, W)) of one frame."""
    k = intrinsics(*size) if k is None else k
    t = -camera_rotation @ np.asarray(camera_center, float)
    image = np.zeros((size[1], size[0], 3), np.uint8)
    moving = np.zeros((size[1], size[0]), bool)
    for plane in sorted(planes, key=lambda p: -(p.depth + frame * p.velocity[2])):
        offset = np.asarray(plane.velocity) * frame
        th, tw = plane.image.shape[:2]
        sx = (plane.x_range[1] - plane.x_range[0]) / tw
        sy = (plane.y_range[1] - plane.y_range[0]) / th
        origin = np.array([plane.x_range[0], plane.y_range[0], plane.depth]) + offset
        m = np.stack([camera_rotation @ np.array([sx, 0, 0]), camera_rotation @ np.array([0, sy, 0]),
                      camera_rotation @ origin + t], axis=1)
        h = k @ m
        warped = cv2.warpPerspective(plane.image, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpPerspective(np.ones((th, tw), np.uint8), h, size, flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT) > 0
        image[alpha] = warped[alpha]
        moving[alpha] = plane.moving
    return image, moving


def layered_background(seed: int = 0) -> list[Plane]:
    """A far wall and two nearer static layers (strong parallax under translation)."""
    return [
        Plane(depth=20.0, x_range=(-30, 30), y_range=(-18, 18), seed=seed),
        Plane(depth=9.0, x_range=(-6.0, -1.0), y_range=(-1.0, 6.0), seed=seed + 1),
        Plane(depth=4.0, x_range=(1.2, 3.5), y_range=(-3.0, 0.5), seed=seed + 2),
    ]


def sequence(kind: str, frames: int = 15, seed: int = 0):
    """(frames (N, H, W, 3) uint8, gt masks (N, H, W) bool, K) of a named scene.

    translating_static: camera translates (lateral + forward), nothing moves;
    translating_object: same camera, a textured object moves independently (diagonally);
    rotating_object:    camera only rotates (yaw + pitch), an object moves;
    static_object:      camera still, an object moves.
    """
    planes = layered_background(seed)
    if kind.endswith("_object"):
        planes.append(Plane(depth=7.0, x_range=(-2.2, -0.2), y_range=(-0.2, 1.3), seed=seed + 3,
                            velocity=(0.045, -0.03, 0.0), moving=True))
    images, masks = [], []
    for i in range(frames):
        if kind.startswith("translating"):
            center, rot = np.array([0.035 * i, 0.01 * i, 0.03 * i]), rotation(0.0)
        elif kind.startswith("rotating"):
            center, rot = np.zeros(3), rotation(0.35 * i, 0.12 * i)
        elif kind.startswith("static"):
            center, rot = np.zeros(3), rotation(0.0)
        else:
            raise ValueError(f"unknown scene {kind!r}")
        image, mask = render(planes, i, center, rot)
        images.append(image)
        masks.append(mask)
    return np.stack(images), np.stack(masks), intrinsics()
