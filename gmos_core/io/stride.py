"""Frame-rate → window stride and the official clamped 5-frame windows (§7.1, §7.2)."""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, TypeVar

T = TypeVar("T")


def stride_from_fps(fps: float) -> int:
    """Official rule: max(1, int(fps / 8)) — four strides span about half a second."""
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"frame rate must be a positive finite number, got {fps!r}")
    return max(1, int(fps / 8))


def resolve_fps_stride(fps: Optional[float], stride: Optional[int] = None, source: str = "") -> int:
    """Official precedence: an explicit stride wins (warning if fps was also given), else stride from fps.

    ``fps`` is the user's --fps or, for an mp4 without --fps, the file's metadata fps. For an image folder
    with neither, the caller passes fps=None and stride=None and gets an error.
    """
    if stride is not None:
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        if fps is not None:
            warnings.warn(f"{source or 'input'}: both fps and stride given; using stride={stride}", stacklevel=2)
        return stride
    if fps is None:
        raise ValueError(
            f"{source or 'input'}: no frame rate known; give --fps or --stride (image folders have no fps metadata)"
        )
    return stride_from_fps(fps)


def window_indices(center: int, num_frames: int, stride: int, window_size: int = 5) -> list[int]:
    """Indices [c−2s, c−s, c, c+s, c+2s] clamped to [0, num_frames−1] (edge frames repeat)."""
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be odd and >= 1, got {window_size}")
    half = window_size // 2
    return [min(max(center + k * stride, 0), num_frames - 1) for k in range(-half, half + 1)]


def group_list_with_stride(items: Sequence[T], window_size: int = 5, stride: int = 1) -> list[list[T]]:
    """One window per item, centred on it, clamped at the ends (official ``group_list_with_stride``)."""
    n = len(items)
    return [[items[j] for j in window_indices(i, n, stride, window_size)] for i in range(n)]
