"""DAVIS palette and the official PNG writers (palette-indexed masks, 8-bit probability maps)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _bit_interleaved_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL-VOC / DAVIS colour map: bits of the index spread over R, G, B from the top bit down."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette[index] = (red, green, blue)
    return palette


#: (256, 3) uint8, identical to the palette of the PNGs the official writer produces.
DAVIS_PALETTE: np.ndarray = _bit_interleaved_palette()
DAVIS_PALETTE.setflags(write=False)


def _check_label_image(label: np.ndarray, what: str) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (H, W) label image, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(
            f"{what}: palette PNGs hold labels 0..255, got range [{label.min()}, {label.max()}]"
        )
    return label.astype(np.uint8)


def save_indexed_png(path: str | Path, label: np.ndarray) -> None:
    """Write an (H, W) label image as a DAVIS-palette PNG (mode "P", optimize=True), as the official code."""
    from PIL import Image

    label = _check_label_image(label, f"save_indexed_png({path})")
    image = Image.fromarray(label, mode="P")
    image.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(str(path), optimize=True)


def read_indexed_png(path: str | Path) -> np.ndarray:
    """Read a palette PNG back as its (H, W) uint8 index array."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode != "P":
            raise ValueError(f"{path}: expected a palette-indexed PNG (mode 'P'), got mode {image.mode!r}")
        return np.array(image)


def probability_to_uint8(prob: np.ndarray) -> np.ndarray:
    """Official GMOS-S probability encoding: uint8(clip(prob * 255, 0, 255)) — truncation, not rounding."""
    prob = np.asarray(prob, dtype=np.float32)
    return np.clip(prob * 255.0, 0, 255).astype(np.uint8)


def save_probability_png(path: str | Path, prob: np.ndarray) -> None:
    """Write an (H, W) probability map in [0, 1] as an 8-bit grayscale PNG (mode "L")."""
    from PIL import Image

    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"save_probability_png({path}): expected an (H, W) map, got shape {prob.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(probability_to_uint8(prob), mode="L").save(str(path))
