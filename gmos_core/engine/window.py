"""Choosing window members by timestamp.

The official code windows a *file* by index: [i−2s, i−s, i, i+s, i+2s] clamped to [0, T−1]. A live stream has
jitter and dropped frames, so the engine chooses members by time instead (see docs/engine.md):

* frame period dt = 1/fps; the segmented frame c has stamp t_c; member k (k = −n..n for a centred window of
  2n+1 frames, k = −2n..0 for an end-anchored one) targets time T_k = t_c + k·s·dt;
* candidates are the frames between the centre and T_k (inclusive) plus those within tol = match_tolerance·dt
  beyond T_k; the member is the candidate nearest T_k (ties go toward the centre);
* with no frame beyond the stream's first/last frame, that edge frame is the nearest candidate — exactly the
  official clamping (edge frames repeat); inside a gap (dropped frames) the member is likewise clamped toward
  the centre.
On a uniformly stamped stream this reproduces the official index windows exactly.
"""
from __future__ import annotations

import bisect
from typing import Sequence


def window_offsets(window_size: int, anchor: str) -> list[int]:
    """Member offsets in strides: center → [−2,−1,0,1,2]; end → [−4,−3,−2,−1,0] (for 5 frames)."""
    if anchor == "center":
        half = window_size // 2
        return list(range(-half, half + 1))
    if anchor == "end":
        return list(range(-(window_size - 1), 1))
    raise ValueError(f"anchor must be 'center' or 'end', got {anchor!r}")


def select_member(stamps: Sequence[int], center_pos: int, target_ns: float, tolerance_ns: float) -> int:
    """Position (into the sorted ``stamps``) of the frame chosen for one window target time.

    stamps: strictly increasing timestamps of the frames available; center_pos: position of the segmented frame.
    """
    if target_ns >= stamps[center_pos]:
        # toward-centre candidate: last frame at or before the target (never before the centre)
        inner = max(center_pos, bisect.bisect_right(stamps, target_ns) - 1)
        outer = inner + 1  # first frame after the target, usable within the tolerance
        if outer < len(stamps) and stamps[outer] - target_ns <= tolerance_ns:
            if stamps[outer] - target_ns < target_ns - stamps[inner]:
                return outer
        return inner
    # toward-centre candidate: first frame at or after the target (never after the centre)
    inner = min(center_pos, bisect.bisect_left(stamps, target_ns))
    outer = inner - 1
    if outer >= 0 and target_ns - stamps[outer] <= tolerance_ns:
        if target_ns - stamps[outer] < stamps[inner] - target_ns:
            return outer
    return inner


def select_window(
    stamps: Sequence[int], center_pos: int, period_ns: float, stride: int, offsets: Sequence[int], tolerance: float
) -> list[int]:
    """Positions of all window members for the frame at ``center_pos``."""
    tolerance_ns = tolerance * period_ns
    return [
        select_member(stamps, center_pos, stamps[center_pos] + k * stride * period_ns, tolerance_ns) for k in offsets
    ]


def decidable(newest_stamp: int, center_stamp: int, period_ns: float, stride: int, offsets: Sequence[int], tolerance: float) -> bool:
    """Whether the window of a frame stamped ``center_stamp`` can be fixed once ``newest_stamp`` has arrived:
    the latest target time minus the tolerance has been reached (a later frame could only be nearer by less
    than the jitter; see docs/engine.md)."""
    latest = center_stamp + max(offsets) * stride * period_ns
    return newest_stamp >= latest - tolerance * period_ns
