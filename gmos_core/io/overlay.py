"""Label maps from per-object masks and the official MP4 overlay drawing (§8.6)."""
from __future__ import annotations

import functools
from typing import Mapping

import numpy as np

from gmos_core.io.palette import DAVIS_PALETTE


def build_indexed_masks(
    segments: Mapping[int, Mapping[int, np.ndarray]], num_frames: int, height: int, width: int
) -> np.ndarray:
    """Official ``_build_indexed_masks``: per frame, label = Σ_objects mask·(obj_id + 1), cast to uint8.

    segments: {frame: {obj_id: bool mask (H, W) or (1, H, W)}}; frames without entries stay zero.
    Overlapping masks add their labels (the official sum; after the propagator's hard max they never overlap).
    """
    out = np.zeros((num_frames, height, width), dtype=np.int64)
    for frame, objects in segments.items():
        frame = int(frame)
        if not 0 <= frame < num_frames:
            raise ValueError(f"build_indexed_masks: frame {frame} outside 0..{num_frames - 1}")
        for obj_id, mask in objects.items():
            mask = np.asarray(mask)
            if mask.size != height * width or mask.shape[-2:] != (height, width):
                raise ValueError(
                    f"build_indexed_masks: mask of object {obj_id} on frame {frame} has shape {mask.shape}, "
                    f"expected (H, W)=({height}, {width}) or (1, H, W)"
                )
            mask = mask.reshape(height, width)
            out[frame] += mask.astype(np.int64) * (int(obj_id) + 1)
    return out.astype(np.uint8)


def label_boundaries(label: np.ndarray) -> np.ndarray:
    """Pixels with a non-zero label whose 4-neighbour label differs (inside the image), as a bool map."""
    label = np.asarray(label)
    differs = np.zeros(label.shape, dtype=bool)
    vertical = label[:-1, :] != label[1:, :]
    horizontal = label[:, :-1] != label[:, 1:]
    differs[:-1, :] |= vertical
    differs[1:, :] |= vertical
    differs[:, :-1] |= horizontal
    differs[:, 1:] |= horizontal
    return differs & (label != 0)


def overlay_frame(rgb: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """One overlay frame: labelled pixels = uint8(alpha·rgb + (1−alpha)·palette colour) (truncated),
    then 1-px white object boundaries. Matches the official ``overlay_masks`` exactly."""
    rgb = np.asarray(rgb)
    label = np.asarray(label)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"overlay_frame: expected rgb (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if label.shape != rgb.shape[:2]:
        raise ValueError(f"overlay_frame: label shape {label.shape} != image size {rgb.shape[:2]}")
    colour = DAVIS_PALETTE[label.astype(np.int64) % 256].astype(np.float64)
    blended = (alpha * rgb.astype(np.float64) + (1.0 - alpha) * colour).astype(np.uint8)
    labelled = (label != 0)[..., None]
    out = np.where(labelled, blended, rgb)
    out[label_boundaries(label)] = 255
    return out


def overlay_masks(rgb: np.ndarray, ann: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(T, H, W, 3) uint8 frames + (T, H, W) labels -> (T, H, W, 3) uint8 overlay frames."""
    rgb = np.asarray(rgb)
    ann = np.asarray(ann)
    if rgb.ndim != 4 or ann.ndim != 3 or rgb.shape[:3] != ann.shape:
        raise ValueError(f"overlay_masks: expected rgb (T,H,W,3) and ann (T,H,W), got {rgb.shape} and {ann.shape}")
    return np.stack([overlay_frame(f, a, alpha) for f, a in zip(rgb, ann)]) if len(rgb) else rgb.copy()


def caption_frame(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` in white on a dark strip across its top rows (same size; the text is cut with "..."
    to fit the width). Used to name the model on every overlay-video frame."""
    if not text:
        return rgb
    ink = _caption_ink(int(rgb.shape[1]), text)
    out = np.array(rgb, copy=True)
    rows = min(ink.shape[0], out.shape[0])
    top = out[:rows]
    top[:] = (top.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darkened band keeps the scene visible
    top[ink[:rows]] = 255
    return out


@functools.lru_cache(maxsize=8)
def _caption_ink(width: int, text: str) -> np.ndarray:
    """(h, width) bool: the text's pixels on a strip of one caption, rendered once per width and text."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    shown = text
    while shown and probe.textlength(shown, font=font) > width - 6:
        shown = shown[:-4] + "..." if len(shown) > 4 else ""
    _, _, _, bottom = probe.textbbox((0, 0), shown or " ", font=font)
    height = bottom + 6
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).text((3, 3), shown, fill=255, font=font)
    return np.asarray(canvas) > 127
