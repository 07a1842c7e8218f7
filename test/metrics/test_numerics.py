"""The float32 reductions and the bilinear resize reproduce torch (the official code's arithmetic)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmos_core.metrics.numerics import (
    bilinear_resize_f32,
    resize_binary_channels,
    torch_sum_rows_f32,
    torch_sum_wide_rows_f32,
)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 12, 16, 17, 31, 64, 65, 300])
def test_row_sum_matches_torch_bitwise(n):
    rng = np.random.default_rng(n)
    x = rng.random((n, 20)).astype(np.float32)
    assert np.array_equal(torch_sum_rows_f32(x), torch.from_numpy(x).sum(0).numpy())
    # and it is not just numpy's order (which differs from n = 5 on)
    if n >= 8:
        diffs = sum(
            not np.array_equal(torch_sum_rows_f32(y), y.sum(0))
            for y in (rng.random((n, 20)).astype(np.float32) for _ in range(20))
        )
        assert diffs > 0


@pytest.mark.parametrize("n", [1, 5, 10, 30, 70])
def test_wide_sum_matches_torch_mean_of_iou_matrices(n):
    x = np.random.default_rng(n).random((n, 20, 20)).astype(np.float32)
    mine = torch_sum_wide_rows_f32(x.reshape(n, -1)) / np.float32(n)
    assert np.array_equal(mine, torch.from_numpy(x).mean(0).numpy().ravel())


@pytest.mark.parametrize("src,dst", [((2, 3), (5, 7)), ((32, 48), (64, 96)), ((10, 10), (20, 3)), ((9, 16), (90, 160))])
def test_resize_values_match_torch(src, dst):
    x = (np.random.default_rng(0).random((3, *src)) > 0.5).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None], size=dst, mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(bilinear_resize_f32(x, dst), ref, rtol=0, atol=1.2e-7)


def test_resize_threshold_agrees_with_torch_on_random_masks():
    rng = np.random.default_rng(1)
    differing, total = 0, 0
    for _ in range(40):
        h, w = rng.integers(1, 120, 2)
        out = tuple(int(v) for v in rng.integers(1, 200, 2))
        x = rng.random((2, h, w)) > rng.random()
        ref = F.interpolate(torch.from_numpy(x.astype(np.float32))[None], size=out, mode="bilinear",
                            align_corners=False)[0].numpy() > 0.5
        differing += int((resize_binary_channels(x, out) != ref).sum())
        total += ref.size
    assert total > 100_000
    assert differing <= total * 1e-6
