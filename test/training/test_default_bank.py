"""The default model's training windows (training/default_bank.py): every window is a real 5-frame window of one
clip at an allowed stride, and the anchor frame, its SAM 2 image and its target stay together through time
reversal, mirroring and the colour gain.

The clip is made so that each fact can be read off the pixels: frame t shows a bright square in row band t on the
left, and the target of frame t is exactly that square."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gmos_core.preprocess import IMAGENET_MEAN, IMAGENET_STD
from training.default_bank import ClipBank, prepare_clip
from training.default_data import Clip

T, SIZE, BAND = 10, 120, 12  # frames, frame side, rows per band (frame t: rows 12t..12t+12)
PI3_HW, SAM = (60, 60), 80   # Pi3 rows per band 6, SAM rows per band 8, target (20x20) rows per band 2
STRIDES = (1, 2)


def _clip() -> Clip:
    frames = np.full((T, SIZE, SIZE, 3), 20, np.uint8)
    labels = np.zeros((T, SIZE, SIZE), np.uint8)
    for t in range(T):
        frames[t, BAND * t:BAND * (t + 1), :30] = 230
        labels[t, BAND * t:BAND * (t + 1), :30] = 1
    return Clip(frames, labels, np.ones((T, 1), bool), "normal")


def _band_and_side(img: np.ndarray, rows_per_band: int) -> tuple[int, str]:
    """(band index, 'left'/'right') of the bright square in a (H, W) image."""
    bright = img > img.min() + 0.5 * (img.max() - img.min())
    rows = np.flatnonzero(bright.any(axis=1))
    cols = np.flatnonzero(bright.any(axis=0))
    band = int(round(rows.mean() / rows_per_band - 0.5))
    return band, ("left" if cols.mean() < img.shape[1] / 2 else "right")


@pytest.fixture(scope="module")
def bank():
    prepared = prepare_clip(_clip(), PI3_HW, SAM)
    assert prepared["pi3"].dtype == torch.uint8 and prepared["pi3"].shape == (T, 3, *PI3_HW)
    assert prepared["sam"].shape == (T, 3, SAM, SAM) and prepared["target"].shape == (T, SAM // 4, SAM // 4)
    return ClipBank([prepared, prepared], "cpu", window=5, strides=STRIDES, seed=3)


def test_windows_are_real_windows_with_their_anchor(bank):
    pi3, sam, target = bank.batch(64)
    assert pi3.shape == (64, 5, 3, *PI3_HW) and sam.shape == (64, 3, SAM, SAM) and target.shape == (64, 20, 20)
    assert 0.0 <= float(pi3.min()) and float(pi3.max()) <= 1.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    sam_rgb = (sam * std + mean).mean(dim=1).numpy()
    seen_strides, seen_sides, seen_reversed = set(), set(), set()
    for b in range(64):
        bands, sides = zip(*(_band_and_side(pi3[b, i].mean(dim=0).numpy(), 6) for i in range(5)))
        steps = np.diff(bands)
        assert len(set(steps.tolist())) == 1, f"frames {bands} are not evenly spaced"
        assert abs(int(steps[0])) in STRIDES
        assert len(set(sides)) == 1  # one mirror decision per window
        anchor_band, side = bands[2], sides[0]
        assert _band_and_side(sam_rgb[b], 8) == (anchor_band, side)  # SAM 2 image = the anchor frame
        assert _band_and_side(target[b].numpy(), 2) == (anchor_band, side)  # target = the anchor's moving mask
        assert 0.9 < float(target[b].sum()) / (2 * 5) < 1.1  # the whole square, nothing else
        seen_strides.add(abs(int(steps[0])))
        seen_sides.add(side)
        seen_reversed.add(bool(steps[0] < 0))
    assert seen_strides == set(STRIDES) and seen_sides == {"left", "right"} and seen_reversed == {True, False}


def test_gain_is_shared_by_the_window_and_its_sam_image(bank):
    pi3, sam, _ = bank.batch(32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    sam_rgb = sam * std + mean
    # background level (20/255 before the gain) per channel: equal in every frame of a window and in its SAM image
    background = pi3[:, :, :, :, 26:34].mean(dim=(-1, -2))  # (B, 5, 3): middle columns, never the square
    assert torch.allclose(background, background[:, :1], atol=1e-6)
    assert torch.allclose(sam_rgb[:, :, :, 35:45].mean(dim=(-1, -2)), background[:, 0], atol=2e-3)
    gains = background[:, 0] / (20 / 255)
    assert float(gains.min()) >= 0.75 * 0.85 - 1e-3 and float(gains.max()) <= 1.25 * 1.15 + 1e-3
    assert float(gains.std()) > 0.05  # it does vary between windows


def test_replace_and_deterministic_windows(bank):
    other = _clip()
    other.frames[:] = 200
    bank.replace(1, prepare_clip(other, PI3_HW, SAM))
    pi3, sam, target = bank.windows(0, [0, 3], 1)
    assert [_band_and_side(pi3[0, i].mean(dim=0).numpy(), 6)[0] for i in range(5)] == [0, 1, 2, 3, 4]
    assert _band_and_side(target[1].numpy(), 2) == (5, "left")
    assert float(bank.pi3[1].float().std()) == 0.0  # slot 1 now holds the flat clip


def test_a_stride_that_fits_no_window_is_refused():
    prepared = prepare_clip(_clip(), PI3_HW, SAM)
    with pytest.raises(ValueError, match=r"no stride in \[3\] fits a 5-frame window in 10-frame clips"):
        ClipBank([prepared], "cpu", window=5, strides=(3,), seed=0)  # needs 13 frames


def _two_object_clip() -> Clip:
    """Object 1: the band square of _clip (moving on every frame). Object 2: a square on the right half, bottom
    rows, visible on every frame, moving on even frames only. Object 3: never visible."""
    clip = _clip()
    labels = clip.labels.copy()
    labels[:, 100:116, 70:100] = 2
    moving = np.zeros((T, 3), bool)
    moving[:, 0] = True
    moving[::2, 1] = True
    moving[:, 2] = True
    return Clip(clip.frames, labels, moving, "normal")


def test_instance_targets_follow_the_anchor_frame_and_its_mirror():
    """The proposer targets (training/datasets.py convention): each object visible at the anchor is a target; its
    motion is that frame's; its mask is its own mask if it moves there, empty if not; and the masks go through the
    same mirror as the fg target (their moving union is the fg target)."""
    prepared = prepare_clip(_two_object_clip(), PI3_HW, SAM, max_objects=4)
    assert prepared["instances"].shape == (T, 4, SAM // 4, SAM // 4) and prepared["moving"].shape == (T, 4)
    bank = ClipBank([prepared], "cpu", window=5, strides=STRIDES, seed=5)
    pi3, sam, target, inst = bank.batch(64, instances=True)
    assert inst["masks"].shape == (64, 4, 20, 20)
    seen_static = seen_moving = 0
    for b in range(64):
        anchor_band, side = _band_and_side(pi3[b, 2].mean(dim=0).numpy(), 6)
        valid, motion, masks = inst["valid"][b], inst["motion"][b], inst["masks"][b]
        assert valid.tolist() == [True, True, False, False]  # object 3 is never visible; slot 4 has no object
        assert motion[0] == 1.0
        assert motion[1] == float(anchor_band % 2 == 0), f"object 2 moves on even frames; anchor {anchor_band}"
        seen_moving += int(motion[1] == 1)
        seen_static += int(motion[1] == 0)
        if motion[1] == 0:
            assert float(masks[1].sum()) == 0.0  # a visible, static object: target with an empty mask
        else:
            assert float(masks[1].sum()) > 0
        assert _band_and_side(masks[0].numpy(), 2) == (anchor_band, side)
        union = masks.amax(dim=0)
        assert torch.allclose(union, target[b], atol=1e-3), "instance masks and fg target disagree (mirror?)"
    assert seen_static and seen_moving


def test_a_bank_without_instance_targets_says_so(bank):
    with pytest.raises(ValueError, match="max_objects > 0"):
        bank.batch(2, instances=True)
