"""Procedural synthetic videos with pixel-perfect masks and motion labels (no downloads).

A scene is a stack of textured planar layers in front of a pinhole camera:

* a far **wall** (fronto-parallel plane) and, in half of the scenes, a **floor** (the plane ``y = camera height``)
  whose depth grows towards the horizon -- a real depth gradient;
* **static objects** (same shape/texture distribution as the moving ones, never annotated -- as in GMOS-2K, where
  only objects that move at some point carry an id) and **occluders** (bars / blobs near the camera);
* **moving objects**, each on its own fronto-parallel plane at its own depth, following a schedule of
  moving / stopped segments (they move, stop and start again), turning and rotating while they move.

The camera moves (translation + rotation, smooth random trajectories), and every layer is warped by the exact
plane-induced homography ``H = K (R_t + t_t n^T / d) K^-1`` of its plane, so near layers shift more than far ones:
true parallax, the cue the model must learn to ignore.  Layers are composited far to near (occlusions), and the
label image is composited the same way from the same warped alpha, so masks match the pixels exactly.

Clip kinds: ``normal`` (camera and objects move), ``static_scene`` (camera moves, nothing else does -- the
Mannequin-Challenge role: parallax only) and ``static_camera`` (objects move, the camera does not).

Motion label: object ``k`` is *moving at frame t* iff its world pose changed between frames ``t-1`` and ``t``
(frame 0 takes the state of the first interval).  Stops and moving segments last at least
``SyntheticConfig.min_segment_s`` seconds, so every label is visible in a 0.16--1.0 s window.

Everything about a sequence is drawn from ``numpy.random.default_rng(seed)`` once (:func:`sample_scene`); any
frame is then a pure function of the scene and the frame index (:func:`render_frame`), so training can render
just the 5 frames of a window.  Textures are random crops of real video frames (the clips of ``texture_videos``;
default: the bundled demo clip plus ``$GMOS_TEXTURE_VIDEOS`` or ``/work/shared/data/videos`` when present) and
procedural ones (value noise, stripes, gradients, checkerboards); the same seed and the same texture sources give
the same sequence, bit for bit.

On disk (:func:`write_dataset`) the output uses the GMOS-2K / DAVIS layout that ``gmos_core.metrics`` reads
unchanged::

    OUT/JPEGImages/<seq>/00000.jpg ...     RGB frames
    OUT/Annotations/<seq>/00000.png ...    DAVIS-palette PNGs, value = object id (1.. for objects that move at
                                           some point, 0 elsewhere)
    OUT/time_annotation.csv                seq_name,time_anno,ann_frames,vid_frames,dataset,split
                                           (time_anno = {'<id>': [[start, end], ...]} inclusive moving intervals)
    OUT/sequences.json                     fps, seed, kind, size and generator version per sequence

Command line::

    python -m training.synthetic --out DIR --seeds 1000-1049 --size 480x272 [--frames 48 --fps 24]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

GENERATOR_VERSION = "1"
CLIP_KINDS = ("normal", "static_scene", "static_camera")
MAX_OBJECT_ID = 19  # GMOS-2K ids are 1..19 and the MOS-I metric handles 20 channels

_BUNDLED_CLIP = Path(__file__).resolve().parent.parent / "gmos_core" / "data" / "dog_demo.mp4"
_SHARED_VIDEOS = Path("/work/shared/data/videos")


def default_texture_videos() -> list[Path]:
    """Real clips used for texture crops: the bundled demo clip, plus ``$GMOS_TEXTURE_VIDEOS`` (a folder or an
    ``os.pathsep`` list of files/folders) or, when that is unset, ``/work/shared/data/videos`` if it exists."""
    paths: list[Path] = []
    if _BUNDLED_CLIP.is_file():
        paths.append(_BUNDLED_CLIP)
    env = os.environ.get("GMOS_TEXTURE_VIDEOS")
    roots = [Path(p) for p in env.split(os.pathsep) if p] if env else ([_SHARED_VIDEOS] if _SHARED_VIDEOS.is_dir() else [])
    for root in roots:
        if root.is_dir():
            paths.extend(sorted(p for p in root.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi")))
        elif root.is_file():
            paths.append(root)
    return paths


@dataclass
class SyntheticConfig:
    """What the generator draws from.  Sizes in pixels, times in seconds, depths in scene units."""

    width: int = 480
    height: int = 272
    num_frames: int = 48
    fps: float = 24.0
    min_moving_objects: int = 1
    max_moving_objects: int = 3
    max_static_objects: int = 3
    max_occluders: int = 2
    p_static_scene: float = 0.15   # camera moves, nothing else does
    p_static_camera: float = 0.15  # objects move, camera does not
    p_floor: float = 0.5
    p_real_texture: float = 0.6    # else procedural
    object_size: tuple = (0.18, 0.42)        # object diameter as a fraction of the frame height
    object_speed: tuple = (0.25, 0.9)        # frame heights per second while moving
    camera_speed: tuple = (0.1, 0.6)         # scene units per second (near layers sit at depth ~2-4)
    camera_rotation_deg_s: float = 6.0       # peak angular speed per axis
    min_segment_s: float = 0.35              # shortest moving / stopped segment
    p_stop_and_go: float = 0.6               # a moving object gets a stop/start schedule (else moves throughout)
    noise_std: float = 2.0                   # sensor noise (uint8 units), 0 to disable
    texture_videos: Optional[list] = None    # None: default_texture_videos()

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"SyntheticConfig: frame size must be at least 32x32, got {self.width}x{self.height}")
        if self.num_frames < 1:
            raise ValueError(f"SyntheticConfig: num_frames must be >= 1, got {self.num_frames}")
        if not self.fps > 0:
            raise ValueError(f"SyntheticConfig: fps must be > 0, got {self.fps}")
        if not 0 <= self.min_moving_objects <= self.max_moving_objects <= MAX_OBJECT_ID:
            raise ValueError(
                f"SyntheticConfig: need 0 <= min_moving_objects <= max_moving_objects <= {MAX_OBJECT_ID}, got "
                f"{self.min_moving_objects}, {self.max_moving_objects}")
        for name in ("p_static_scene", "p_static_camera", "p_floor", "p_real_texture", "p_stop_and_go"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SyntheticConfig: {name} must be a probability in [0, 1], got {value}")
        if self.p_static_scene + self.p_static_camera > 1.0:
            raise ValueError("SyntheticConfig: p_static_scene + p_static_camera must be <= 1")


# ------------------------------------------------------------------------------------------------ textures


class TextureBank:
    """Frames of real clips (decoded once per process, a few per clip, longest side <= 640)."""

    _cache: dict = {}

    def __init__(self, videos: Sequence[str | Path], frames_per_video: int = 6, max_side: int = 640):
        key = (tuple(str(Path(v).resolve()) for v in videos), frames_per_video, max_side)
        if key not in TextureBank._cache:
            TextureBank._cache[key] = self._decode(videos, frames_per_video, max_side)
        self.frames: list[np.ndarray] = TextureBank._cache[key]
        self.sources = [str(v) for v in videos]

    @staticmethod
    def _decode(videos, frames_per_video, max_side) -> list[np.ndarray]:
        import cv2

        from gmos_core.io.video import iter_video_frames, video_info

        out = []
        for path in videos:
            try:
                total = video_info(path).num_frames or 60
            except (ValueError, FileNotFoundError) as exc:
                raise ValueError(f"texture video {path}: {exc}; expected a readable video file") from None
            wanted = set(np.linspace(0, max(total - 1, 0), frames_per_video).astype(int).tolist())
            for index, frame in enumerate(iter_video_frames(path, 0, max(wanted) + 1)):
                if index in wanted:
                    scale = min(1.0, max_side / max(frame.shape[:2]))
                    if scale < 1.0:
                        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                    out.append(np.ascontiguousarray(frame))
        return out


def _value_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2

    acc = np.zeros((h, w, 3), np.float32)
    amp, total = 1.0, 0.0
    for cells in (rng.integers(2, 5), rng.integers(6, 12), rng.integers(16, 40)):
        small = rng.random((int(cells), int(cells) * max(1, w // max(h, 1)) + 1, 3)).astype(np.float32)
        acc += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    acc /= total
    lo, hi = rng.random(3) * 0.5, 0.5 + rng.random(3) * 0.5
    return np.clip((lo + (hi - lo) * acc) * 255, 0, 255).astype(np.uint8)


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 40)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    wave = 0.5 + 0.5 * np.sin(phase)
    if rng.random() < 0.5:
        wave = (wave > 0.5).astype(np.float32)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return (c0 + (c1 - c0) * wave[..., None]).astype(np.uint8)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = c0 + (c1 - c0) * t[..., None]
    img += rng.normal(0, 6, (h, w, 1))  # a little grain so flat gradients still carry texture
    return np.clip(img, 0, 255).astype(np.uint8)


def _checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    cell = int(rng.integers(6, 30))
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy // cell + xx // cell) % 2).astype(np.float32)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return (c0 + (c1 - c0) * board[..., None]).astype(np.uint8)


_PROCEDURAL = (_value_noise, _stripes, _gradient, _checker)


def _texture(rng: np.random.Generator, h: int, w: int, bank: TextureBank, p_real: float) -> np.ndarray:
    """A (h, w, 3) uint8 texture: a random (scaled, possibly flipped) crop of a real frame, or a procedural one."""
    import cv2

    if bank.frames and rng.random() < p_real:
        frame = bank.frames[int(rng.integers(len(bank.frames)))]
        fh, fw = frame.shape[:2]
        scale = rng.uniform(0.5, 1.5)
        ch, cw = min(fh, max(8, int(h * scale))), min(fw, max(8, int(w * scale)))
        y0, x0 = int(rng.integers(0, fh - ch + 1)), int(rng.integers(0, fw - cw + 1))
        crop = frame[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        tex = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
        gain = rng.uniform(0.7, 1.3, 3)  # colour jitter: real crops of 3 clips should not all look alike
        return np.clip(tex * gain, 0, 255).astype(np.uint8)
    return _PROCEDURAL[int(rng.integers(len(_PROCEDURAL)))](rng, h, w)


def _shape_mask(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    """(size, size) uint8 {0, 255} silhouette."""
    import cv2

    mask = np.zeros((size, size), np.uint8)
    c = size / 2.0
    if kind == "bar":
        w = rng.uniform(0.15, 0.35) * size
        cv2.rectangle(mask, (int(c - w / 2), 0), (int(c + w / 2), size - 1), 255, -1)
        return mask
    choice = rng.integers(4)
    if choice == 0:  # ellipse
        cv2.ellipse(mask, (int(c), int(c)), (int(size * rng.uniform(0.25, 0.48)), int(size * rng.uniform(0.2, 0.48))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif choice == 1:  # star-ish / irregular radial polygon
        n = int(rng.integers(5, 14))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = size * rng.uniform(0.2, 0.48, n)
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255)
    elif choice == 2:  # rounded rectangle
        hw, hh = size * rng.uniform(0.2, 0.45), size * rng.uniform(0.2, 0.45)
        r = int(min(hw, hh) * rng.uniform(0.1, 0.6))
        x0, x1, y0, y1 = int(c - hw), int(c + hw), int(c - hh), int(c + hh)
        cv2.rectangle(mask, (x0 + r, y0), (x1 - r, y1), 255, -1)
        cv2.rectangle(mask, (x0, y0 + r), (x1, y1 - r), 255, -1)
        for cx, cy in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
            cv2.circle(mask, (cx, cy), r, 255, -1)
    else:  # blob: union of ellipses (animal-like silhouettes with limbs)
        for _ in range(int(rng.integers(2, 5))):
            ex, ey = c + rng.uniform(-0.2, 0.2) * size, c + rng.uniform(-0.2, 0.2) * size
            cv2.ellipse(mask, (int(ex), int(ey)), (int(size * rng.uniform(0.08, 0.28)), int(size * rng.uniform(0.06, 0.2))),
                        float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


# ------------------------------------------------------------------------------------------------ scene


@dataclass
class Layer:
    """A textured plane.  ``rgba`` is drawn at reference-image coordinates ``placement[t] @ [u, v, 1]`` (camera 0
    image plane), on the plane ``normal . X = depth`` (camera-0 coordinates; y points down)."""

    rgba: np.ndarray                 # (h, w, 4) uint8; alpha 255 inside the object
    placement: np.ndarray            # (T, 3, 3) sprite -> reference image coordinates, per frame
    normal: np.ndarray               # (3,) plane normal
    depth: float                     # plane offset along the normal (> 0)
    label: int = 0                   # annotation id (0: not annotated)
    moving: Optional[np.ndarray] = None  # (T,) bool, world motion during the interval ending at frame t
    kind: str = "object"             # wall | floor | static | occluder | moving
    full_frame: bool = False         # covers the whole frame (reflect at the border instead of clipping)
    sort_depth: float = 0.0          # painter's order key (larger drawn first)


@dataclass
class Scene:
    seed: int
    config: SyntheticConfig
    kind: str
    K: np.ndarray                    # (3, 3) intrinsics
    rotations: np.ndarray            # (T, 3, 3) world (camera 0) -> camera t
    translations: np.ndarray         # (T, 3)
    layers: list = field(default_factory=list)   # far to near
    noise: Optional[tuple] = None                 # ((H+16, W+16, 3) uint8 positive, negative) noise tile

    @property
    def num_frames(self) -> int:
        return self.rotations.shape[0]

    @property
    def name(self) -> str:
        return sequence_name(self.seed)

    def moving_matrix(self) -> np.ndarray:
        """(T, n_ids) bool: object id k+1 moving at frame t."""
        ids = sorted(l.label for l in self.layers if l.label > 0)
        out = np.zeros((self.num_frames, len(ids)), bool)
        for layer in self.layers:
            if layer.label > 0:
                out[:, layer.label - 1] = layer.moving
        return out

    def time_annotation(self, visible: Optional[np.ndarray] = None) -> dict:
        """GMOS-2K ``time_anno``: {'<id>': [[start, end], ...]} inclusive frame intervals where the object moves.

        ``visible`` ((T, n_ids) bool, see :func:`visible_matrix`) restricts the intervals to the frames where the
        object can be seen, as a human annotator marks them (what :func:`write_sequence` writes). Why it matters:
        the MOS-I metric scores an empty prediction of an invisible "moving" object as a hit, and on a sequence
        whose moving objects are all invisible an empty prediction gets mtIoU ~ 1e9 (I / (0 + G - I + 1e-8)).
        Objects that never visibly move get no key (they stay in the masks as never-moving objects)."""
        anno = {}
        for layer in sorted((l for l in self.layers if l.label > 0), key=lambda l: l.label):
            flags = layer.moving if visible is None else layer.moving & visible[:, layer.label - 1]
            if visible is None or flags.any():
                anno[str(layer.label)] = _intervals(flags)
        return anno


# An object counts as moving in a written time annotation only on frames where at least this many of its pixels are
# visible (an annotator cannot mark what cannot be seen; a few pixels at the frame border are not an object).
MIN_VISIBLE_PIXELS = 32


def visible_matrix(labels: np.ndarray, num_ids: int, min_pixels: int = MIN_VISIBLE_PIXELS) -> np.ndarray:
    """(T, H, W) label maps -> (T, num_ids) bool: object id k+1 has at least ``min_pixels`` pixels in frame t."""
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(lab.ravel(), minlength=num_ids + 1)[1:num_ids + 1] for lab in labels])
    return counts >= min_pixels


def sequence_name(seed: int) -> str:
    return f"synth_{int(seed):06d}"


def _intervals(flags: np.ndarray) -> list[list[int]]:
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append([start, i - 1])
            start = None
    return out


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _smooth_curve(rng: np.random.Generator, times: np.ndarray, rate: float) -> np.ndarray:
    """A smooth random 1-D trajectory starting at 0 whose speed stays around ``rate`` per second."""
    v0 = rng.uniform(-1, 1) * rate
    out = v0 * times
    for _ in range(2):
        omega = rng.uniform(0.5, 3.0)
        amp = rng.uniform(0, 0.5) * rate / omega
        phase = rng.uniform(0, 2 * np.pi)
        out = out + amp * (np.sin(omega * times + phase) - np.sin(phase))
    return out


def _affine(cx: float, cy: float, angle: float, scale: float, sprite_size: int) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    half = sprite_size / 2.0
    return np.array([[c, -s, cx - c * half + s * half], [s, c, cy - s * half - c * half], [0, 0, 1]])


def _segments(rng: np.random.Generator, n: int, fps: float, min_seg_s: float, stop_and_go: bool) -> np.ndarray:
    """(n,) bool moving schedule with at least one moving frame; segments last >= min_seg_s."""
    if not stop_and_go or n < 3:
        return np.ones(n, bool)
    min_len = max(1, int(round(min_seg_s * fps)))
    flags = np.zeros(n, bool)
    state = bool(rng.random() < 0.6)
    t = 0
    while t < n:
        length = int(rng.integers(min_len, max(min_len + 1, 3 * min_len)))
        if n - (t + length) < min_len:  # no tail shorter than a segment: the last one runs to the end
            length = n - t
        flags[t:t + length] = state
        t += length
        state = not state
    if not flags.any():
        flags[: max(min_len, n // 2)] = True
    return flags


def _object_track(rng: np.random.Generator, cfg: SyntheticConfig, moving: np.ndarray, size_px: float):
    """Per-frame (cx, cy, angle, scale) in reference coordinates; the pose changes only on moving frames."""
    W, H, T, fps = cfg.width, cfg.height, cfg.num_frames, cfg.fps
    pos = np.array([rng.uniform(0.15, 0.85) * W, rng.uniform(0.2, 0.85) * H])
    speed = rng.uniform(*cfg.object_speed) * H
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, 1.0)
    spin = rng.normal(0, 0.6)
    angle = rng.uniform(-0.3, 0.3)
    scale_phase = rng.uniform(0, 2 * np.pi)
    out = np.zeros((T, 4))
    margin = 0.5 * size_px
    lo, hi = np.array([margin - 0.15 * W, margin]), np.array([W * 1.15 - margin, H - margin * 0.6])
    for t in range(T):
        if moving[t]:
            heading += turn / fps + rng.normal(0, 0.3) / math.sqrt(fps)
            step = speed / fps * np.array([math.cos(heading), math.sin(heading)])
            pos = pos + step
            for axis in range(2):  # bounce off the borders so objects stay (mostly) in view
                if pos[axis] < lo[axis] or pos[axis] > hi[axis]:
                    pos[axis] = np.clip(pos[axis], lo[axis], hi[axis])
                    heading = math.pi - heading if axis == 0 else -heading
            angle += spin / fps
            scale_phase += 2 * np.pi * 1.5 / fps  # a slight "breathing" of the silhouette while moving
        out[t] = (pos[0], pos[1], angle, 1.0 + 0.04 * math.sin(scale_phase))
    return out


def _sprite_layer(rng, cfg, bank, kind, depth, label, moving) -> Layer:
    T = cfg.num_frames
    size_px = rng.uniform(*cfg.object_size) * cfg.height
    if kind == "occluder":
        size_px = rng.uniform(0.6, 1.2) * cfg.height
    side = max(16, int(size_px))
    mask = _shape_mask(rng, side, "bar" if (kind == "occluder" and rng.random() < 0.6) else "object")
    rgba = np.dstack([_texture(rng, side, side, bank, cfg.p_real_texture), mask])
    if moving is None:
        moving = np.zeros(T, bool)
    track = _object_track(rng, cfg, moving, size_px)
    placement = np.stack([_affine(cx, cy, a, s, side) for cx, cy, a, s in track])
    return Layer(rgba, placement, np.array([0.0, 0.0, 1.0]), float(depth), label, moving, kind, False, float(depth))


def sample_scene(seed: int, config: Optional[SyntheticConfig] = None, kind: Optional[str] = None) -> Scene:
    """Draw everything about sequence ``seed`` (deterministic for a seed, config and texture sources)."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(int(seed))
    bank = TextureBank(cfg.texture_videos if cfg.texture_videos is not None else default_texture_videos())
    W, H, T, fps = cfg.width, cfg.height, cfg.num_frames, cfg.fps
    if kind is None:
        u = rng.random()
        kind = "static_scene" if u < cfg.p_static_scene else (
            "static_camera" if u < cfg.p_static_scene + cfg.p_static_camera else "normal")
    elif kind not in CLIP_KINDS:
        raise ValueError(f"clip kind {kind!r} unknown; expected one of {CLIP_KINDS}")
    else:
        rng.random()  # keep the stream aligned with the kind=None draw

    f = W * rng.uniform(0.7, 1.1)
    K = np.array([[f, 0, W / 2.0], [0, f, H / 2.0], [0, 0, 1]])
    times = np.arange(T) / fps
    if kind == "static_camera":
        rotations = np.repeat(np.eye(3)[None], T, 0)
        translations = np.zeros((T, 3))
    else:
        speed = rng.uniform(*cfg.camera_speed)
        tx = _smooth_curve(rng, times, speed)
        ty = _smooth_curve(rng, times, 0.4 * speed)
        tz = _smooth_curve(rng, times, 0.5 * speed)
        rot = np.deg2rad(cfg.camera_rotation_deg_s)
        yaw = _smooth_curve(rng, times, rot * rng.uniform(0.2, 1.0))
        pitch = _smooth_curve(rng, times, 0.5 * rot * rng.uniform(0.2, 1.0))
        roll = _smooth_curve(rng, times, 0.3 * rot * rng.uniform(0.0, 1.0))
        rotations = np.stack([_rotation(a, b, c) for a, b, c in zip(yaw, pitch, roll)])
        translations = np.stack([tx, ty, tz], 1)

    layers: list[Layer] = []
    margin_x, margin_y = int(0.35 * W), int(0.35 * H)
    # far wall, optionally a floor that meets it at the horizon band
    has_floor = rng.random() < cfg.p_floor
    cam_height = 1.0
    floor_top = int(H / 2 + rng.uniform(0.08, 0.25) * H)
    wall_depth = f * cam_height / (floor_top - H / 2) if has_floor else rng.uniform(12.0, 40.0)
    wall_tex = _texture(rng, H + 2 * margin_y, W + 2 * margin_x, bank, cfg.p_real_texture)
    wall = np.dstack([wall_tex, np.full(wall_tex.shape[:2], 255, np.uint8)])
    shift = np.array([[1, 0, -margin_x], [0, 1, -margin_y], [0, 0, 1]], float)
    layers.append(Layer(wall, np.repeat(shift[None], T, 0), np.array([0.0, 0.0, 1.0]), float(wall_depth),
                        kind="wall", full_frame=True, sort_depth=1e9))
    if has_floor:
        fh = H - floor_top + margin_y
        floor_tex = _texture(rng, fh, W + 2 * margin_x, bank, cfg.p_real_texture)
        floor = np.dstack([floor_tex, np.full(floor_tex.shape[:2], 255, np.uint8)])
        place = np.array([[1, 0, -margin_x], [0, 1, floor_top], [0, 0, 1]], float)
        layers.append(Layer(floor, np.repeat(place[None], T, 0), np.array([0.0, 1.0, 0.0]), cam_height,
                            kind="floor", sort_depth=1e8))

    n_moving = 0 if kind == "static_scene" else int(rng.integers(cfg.min_moving_objects, cfg.max_moving_objects + 1))
    n_static = int(rng.integers(0, cfg.max_static_objects + 1))
    n_occ = int(rng.integers(0, cfg.max_occluders + 1))
    far = wall_depth * 0.8
    for i in range(n_moving):
        stop_and_go = rng.random() < cfg.p_stop_and_go
        moving = _segments(rng, T, fps, cfg.min_segment_s, stop_and_go)
        layers.append(_sprite_layer(rng, cfg, bank, "moving", rng.uniform(2.5, min(12.0, far)), i + 1, moving))
    for _ in range(n_static):
        layers.append(_sprite_layer(rng, cfg, bank, "static", rng.uniform(2.5, min(14.0, far)), 0, None))
    for _ in range(n_occ):
        layers.append(_sprite_layer(rng, cfg, bank, "occluder", rng.uniform(1.5, 3.0), 0, None))
    layers.sort(key=lambda l: -l.sort_depth)
    noise = None
    if cfg.noise_std > 0:
        signed = np.round(rng.normal(0, cfg.noise_std, (H + 16, W + 16, 3)))
        # (positive, negative) uint8 parts: two saturating cv2 ops per frame instead of an int16 round trip
        noise = (np.clip(signed, 0, 255).astype(np.uint8), np.clip(-signed, 0, 255).astype(np.uint8))
    return Scene(int(seed), cfg, kind, K, rotations, translations, layers, noise)


# ------------------------------------------------------------------------------------------------ rendering


def _layer_homography(scene: Scene, layer: Layer, t: int) -> np.ndarray:
    K = scene.K
    plane = scene.rotations[t] + np.outer(scene.translations[t], layer.normal) / layer.depth
    return K @ plane @ np.linalg.inv(K) @ layer.placement[t]


def render_frame(scene: Scene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of ``scene``: (H, W, 3) uint8 RGB and (H, W) uint8 labels (ids of annotated objects)."""
    import cv2

    cfg = scene.config
    W, H = cfg.width, cfg.height
    if not 0 <= t < scene.num_frames:
        raise IndexError(f"frame {t} outside the sequence (0..{scene.num_frames - 1})")
    image = np.zeros((H, W, 3), np.uint8)
    labels = np.zeros((H, W), np.uint8)
    for layer in scene.layers:
        Hm = _layer_homography(scene, layer, t)
        if layer.full_frame:
            image[:] = cv2.warpPerspective(layer.rgba[..., :3], Hm, (W, H), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REFLECT)
            labels[:] = layer.label
            continue
        h, w = layer.rgba.shape[:2]
        corners = Hm @ np.array([[0, w, w, 0], [0, 0, h, h], [1, 1, 1, 1]], float)
        if np.any(corners[2] <= 1e-6):
            continue  # behind the camera (does not happen with the sampled depths and motions)
        xs, ys = corners[0] / corners[2], corners[1] / corners[2]
        x0, x1 = max(0, int(math.floor(xs.min()))), min(W, int(math.ceil(xs.max())) + 1)
        y0, y1 = max(0, int(math.floor(ys.min()))), min(H, int(math.ceil(ys.max())) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        roi = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], float) @ Hm
        warped = cv2.warpPerspective(layer.rgba, roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        inside = warped[..., 3] >= 128  # one hard alpha for pixels and labels: masks are pixel-exact
        image[y0:y1, x0:x1][inside] = warped[..., :3][inside]
        labels[y0:y1, x0:x1][inside] = layer.label
    if scene.noise is not None:
        oy, ox = (t * 7) % 16, (t * 11) % 16  # rolled tile: fresh-looking noise per frame at no sampling cost
        positive, negative = scene.noise
        image = cv2.subtract(cv2.add(image, positive[oy:oy + H, ox:ox + W]), negative[oy:oy + H, ox:ox + W])
    return image, labels


def render_sequence(scene: Scene, indices: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(T', H, W, 3) uint8 frames and (T', H, W) uint8 labels for ``indices`` (default: all frames)."""
    idx = range(scene.num_frames) if indices is None else indices
    frames, labels = zip(*(render_frame(scene, int(t)) for t in idx))
    return np.stack(frames), np.stack(labels)


# ------------------------------------------------------------------------------------------------ on disk


CSV_COLUMNS = ("seq_name", "time_anno", "ann_frames", "vid_frames", "dataset", "split")


def write_sequence(scene: Scene, out: str | Path, jpeg_quality: int = 92) -> dict:
    """Write one sequence into the layout under ``out``; returns its CSV row."""
    import cv2

    from gmos_core.io.palette import save_indexed_png

    out = Path(out)
    name = scene.name
    img_dir, ann_dir = out / "JPEGImages" / name, out / "Annotations" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    num_ids = scene.moving_matrix().shape[1]
    visible = np.zeros((scene.num_frames, num_ids), bool)
    for t in range(scene.num_frames):
        rgb, lab = render_frame(scene, t)
        ok = cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise OSError(f"cannot write {img_dir / f'{t:05d}.jpg'}")
        save_indexed_png(ann_dir / f"{t:05d}.png", lab)
        visible[t] = visible_matrix(lab[None], num_ids)[0]
    return {"seq_name": name, "time_anno": repr(scene.time_annotation(visible)), "ann_frames": scene.num_frames,
            "vid_frames": scene.num_frames}


def write_dataset(out: str | Path, seeds: Sequence[int], config: Optional[SyntheticConfig] = None,
                  split: str = "test", dataset: str = "synthetic", progress: bool = True) -> Path:
    """Render ``seeds`` into ``out`` (frames, palette PNGs, time_annotation.csv, sequences.json)."""
    cfg = config or SyntheticConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, meta = [], {}
    try:
        from tqdm import tqdm
        iterator = tqdm(list(seeds), desc="synthetic", unit="seq", disable=not progress)
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        iterator = list(seeds)
    for seed in iterator:
        scene = sample_scene(int(seed), cfg)
        row = write_sequence(scene, out)
        row.update(dataset=dataset, split=split)
        rows.append(row)
        meta[scene.name] = {"seed": int(seed), "kind": scene.kind, "fps": cfg.fps, "width": cfg.width,
                            "height": cfg.height, "num_frames": scene.num_frames,
                            "generator_version": GENERATOR_VERSION}
    with (out / "time_annotation.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    config_dict = asdict(cfg)
    config_dict["texture_videos"] = [str(p) for p in (cfg.texture_videos or default_texture_videos())]
    (out / "sequences.json").write_text(json.dumps({"config": config_dict, "sequences": meta}, indent=1))
    return out


def parse_seeds(text: str) -> list[int]:
    """``"1000-1049"``, ``"1,2,5"`` or a mix (``"1-3,10"``) -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds {text!r}: expected integers or inclusive ranges like 1000-1049") from None
    if not seeds:
        raise ValueError(f"--seeds {text!r}: no seeds given")
    return seeds


def parse_size(text: str) -> tuple[int, int]:
    """``"480x272"`` -> (480, 272)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 480x272") from None
    return w, h


def measure_fps(num_sequences: int = 4, config: Optional[SyntheticConfig] = None) -> float:
    """Rendered frames per second (scene sampling included) on this process."""
    cfg = config or SyntheticConfig()
    sample_scene(0, cfg)  # decode the texture bank outside the timing
    frames, start = 0, time.perf_counter()
    for seed in range(num_sequences):
        scene = sample_scene(seed, cfg)
        for t in range(scene.num_frames):
            render_frame(scene, t)
            frames += 1
    return frames / (time.perf_counter() - start)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output folder (JPEGImages/, Annotations/, time_annotation.csv)")
    parser.add_argument("--seeds", default="0-9", help="sequence seeds: '1000-1049', '1,2,5' (default 0-9)")
    parser.add_argument("--size", default="480x272", help="WIDTHxHEIGHT (default 480x272)")
    parser.add_argument("--frames", type=int, default=48, help="frames per sequence (default 48)")
    parser.add_argument("--fps", type=float, default=24.0, help="frame rate of the synthetic camera (default 24)")
    parser.add_argument("--split", default="test", help="value of the CSV's split column (default test)")
    parser.add_argument("--texture-videos", type=Path, nargs="*", default=None,
                        help="videos (or folders of videos) to crop textures from (default: bundled clip + "
                             "$GMOS_TEXTURE_VIDEOS or /work/shared/data/videos)")
    parser.add_argument("--benchmark", action="store_true", help="print rendered frames/s (one process) and exit")
    args = parser.parse_args(argv)
    try:
        width, height = parse_size(args.size)
        videos = None
        if args.texture_videos is not None:
            videos = []
            for p in args.texture_videos:
                if p.is_dir():
                    videos.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi")))
                elif p.is_file():
                    videos.append(p)
                else:
                    raise ValueError(f"--texture-videos {p}: not a file or folder")
        cfg = SyntheticConfig(width=width, height=height, num_frames=args.frames, fps=args.fps, texture_videos=videos)
        if args.benchmark:
            import cv2

            cv2.setNumThreads(1)  # one core: OpenCV would otherwise spread the warps over every core
            print(f"{measure_fps(config=cfg):.1f} frames/s at {width}x{height} (one process, OpenCV 1 thread)")
            return 0
        if args.out is None:
            raise ValueError("--out is required (the folder to write the dataset into)")
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        print(f"training.synthetic: {exc}", file=sys.stderr)
        return 2
    write_dataset(args.out, seeds, cfg, split=args.split)
    print(f"wrote {len(seeds)} sequences to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
