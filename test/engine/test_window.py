"""Timestamp-driven window selection (gmos_core.engine.window)."""
from __future__ import annotations

import numpy as np
import pytest

from gmos_core.engine.window import decidable, select_window, window_offsets
from gmos_core.io.stride import group_list_with_stride

CENTER = window_offsets(5, "center")
PERIOD = 1e9 / 30


def test_offsets():
    assert window_offsets(5, "center") == [-2, -1, 0, 1, 2]
    assert window_offsets(5, "end") == [-4, -3, -2, -1, 0]
    with pytest.raises(ValueError, match="anchor"):
        window_offsets(5, "middle")


@pytest.mark.parametrize("fps", [29.97, 30.0, 24.0, 60.0])
@pytest.mark.parametrize("T,stride", [(1, 1), (2, 3), (7, 1), (7, 3), (40, 3), (40, 7)])
def test_uniform_stamps_equal_official_windows(fps, T, stride):
    period = 1e9 / fps
    stamps = [int(round(i * period)) for i in range(T)]
    got = [select_window(stamps, c, period, stride, CENTER, 0.5) for c in range(T)]
    assert got == group_list_with_stride(list(range(T)), 5, stride)


def test_jitter_keeps_the_intended_frames():
    rng = np.random.default_rng(0)
    T, stride = 60, 3
    stamps = [int(i * PERIOD + rng.uniform(-0.2, 0.2) * PERIOD) for i in range(T)]
    got = [select_window(stamps, c, PERIOD, stride, CENTER, 0.5) for c in range(T)]
    assert got == group_list_with_stride(list(range(T)), 5, stride)


def test_dropped_frames_pick_nearest_then_clamp_toward_centre():
    # frames 0..20 at 30 fps with 9 and 12 dropped; list positions no longer equal frame numbers
    numbers = [i for i in range(21) if i not in (9, 12)]
    stamps = [int(round(i * PERIOD)) for i in numbers]
    center = numbers.index(6)
    members = [numbers[p] for p in select_window(stamps, center, PERIOD, 3, CENTER, 0.5)]
    # target 9 is missing: 8 and 10 are equally near -> toward the centre (8); target 12 missing -> 11 vs 13:
    # tie -> toward the centre (11)
    assert members == [0, 3, 6, 8, 11]
    # a big gap: nothing within tolerance of targets 9 and 12 -> clamp toward the centre (last frame before)
    numbers = [0, 1, 2, 3, 4, 5, 6, 7, 20, 21]
    stamps = [int(round(i * PERIOD)) for i in numbers]
    members = [numbers[p] for p in select_window(stamps, numbers.index(6), PERIOD, 3, CENTER, 0.5)]
    assert members == [0, 3, 6, 7, 7]
    # backward side: gap before the centre -> first frame after the target
    numbers = [0, 10, 11, 12, 13, 14, 15, 16]
    stamps = [int(round(i * PERIOD)) for i in numbers]
    members = [numbers[p] for p in select_window(stamps, numbers.index(12), PERIOD, 3, CENTER, 0.5)]
    assert members == [10, 10, 12, 15, 16]


def test_decidable_waits_for_the_last_target():
    assert not decidable(int(5 * PERIOD), 0, PERIOD, 3, CENTER, 0.5)
    assert decidable(int(6 * PERIOD) - int(0.4 * PERIOD), 0, PERIOD, 3, CENTER, 0.5)  # jittered early arrival
    assert decidable(0, 0, PERIOD, 3, window_offsets(5, "end"), 0.5)  # end anchor: no look-ahead
