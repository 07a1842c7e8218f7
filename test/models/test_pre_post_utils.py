"""preprocess / postprocess helpers vs the official `utils` fixture sections (pi3_target_size,
pi3_resize_example, sam2_transform, get_numpy_hard_max)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gmos_core.postprocess import ProposalLabeler, get_numpy_hard_max, hard_max_slots
from gmos_core.preprocess import pi3_image_tensor, pi3_target_size, sam2_image_tensor

from .conftest import load_tensors


@pytest.fixture(scope="module")
def utils_json(fixtures_dir):
    return json.loads((fixtures_dir / "utils" / "utils.json").read_text())


@pytest.fixture(scope="module")
def utils_tensors(fixtures_dir):
    return load_tensors(fixtures_dir / "utils" / "utils.safetensors")


def test_pi3_target_size(utils_json):
    cases = utils_json["pi3_target_size"]["cases"]
    assert len(cases) == 11
    for case in cases:
        w, h = case["input_WxH"]
        assert list(pi3_target_size(w, h)) == case["output_HxW"], case


def test_pi3_target_size_budget_and_errors():
    for w, h in [(854, 480), (33, 999), (5000, 7), (1, 1)]:
        th, tw = pi3_target_size(w, h)
        assert th % 14 == 0 and tw % 14 == 0 and th * tw <= 255000
    assert pi3_target_size(854, 480, pixel_limit=100000) == (238, 420)
    assert pi3_target_size(854, 480, pixel_limit=100000)[0] * pi3_target_size(854, 480, pixel_limit=100000)[1] <= 100000
    with pytest.raises(ValueError, match="width"):
        pi3_target_size(0, 480)
    with pytest.raises(ValueError, match="pixel_limit"):
        pi3_target_size(640, 480, pixel_limit=100)


def test_pi3_lanczos_resize_is_exact(fixtures_dir):
    src = np.array(Image.open(fixtures_dir / "utils" / "lanczos_input_854x480.png").convert("RGB"))
    ref = np.array(Image.open(fixtures_dir / "utils" / "lanczos_output_672x378.png").convert("RGB"))
    tensor = pi3_image_tensor([src, src])
    assert tensor.shape == (2, 3, 378, 672) and tensor.dtype == torch.float32
    expected = torch.from_numpy(ref).permute(2, 0, 1).float() / 255
    assert torch.equal(tensor[0], expected) and torch.equal(tensor[1], expected)


@pytest.mark.parametrize("case", ["small_80x60", "wide_1500x40"])
def test_sam2_transform(utils_tensors, case):
    r = {k.split("/")[-1]: v for k, v in utils_tensors.items() if k.startswith(f"sam2_transform/{case}/")}
    out = sam2_image_tensor(r["input_u8"].numpy())
    assert out.shape == (3, 1024, 1024)
    torch.testing.assert_close(out[0, ::4, ::4], r["ch0_sub4"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 517, :], r["row517"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, :, 333], r["col333"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.double().mean((1, 2)), r["channel_mean_f64"], atol=1e-6, rtol=0)
    batch = sam2_image_tensor([r["input_u8"].numpy()] * 2)
    assert batch.shape == (2, 3, 1024, 1024) and torch.equal(batch[1], out)


def test_bad_frames_are_named():
    with pytest.raises(ValueError, match="RGB uint8"):
        sam2_image_tensor(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        pi3_image_tensor([np.zeros((10, 10), dtype=np.uint8)])


@pytest.mark.parametrize("threshold", ["0", "0.5"])
def test_get_numpy_hard_max(utils_json, threshold):
    section = utils_json["get_numpy_hard_max"]
    x = np.array(section["input"], dtype=np.float32)
    expected = np.array(section[f"threshold_{threshold}"], dtype=np.float32)
    out = get_numpy_hard_max(x, float(threshold))
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, expected)
    slots = hard_max_slots(x, float(threshold))
    np.testing.assert_array_equal(slots >= 0, expected.sum(0) > 0)
    np.testing.assert_array_equal(np.where(slots >= 0, slots, 0), np.where(expected.sum(0) > 0, expected.argmax(0), 0))


def test_labeler_rejects_mismatched_frames():
    lab = ProposalLabeler()
    with pytest.raises(ValueError, match="disagree"):
        lab.add(np.zeros((3, 4, 4), np.float32), np.zeros(2), np.zeros(3))
    lab.add(np.zeros((3, 4, 4), np.float32), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="differs"):
        lab.add(np.zeros((3, 5, 4), np.float32), np.zeros(3), np.zeros(3))
    labels = lab.finalize()  # all logits 0 -> nothing beats the threshold -> background only
    assert labels.seq_annos.max() == 0 and labels.label_slots.size == 0


# ---- mutation checks: the comparisons above must reject the known pitfalls ----------------------------

def _sam2_transform_max_diff(utils_tensors, case) -> float:
    r = {k.split("/")[-1]: v for k, v in utils_tensors.items() if k.startswith(f"sam2_transform/{case}/")}
    out = sam2_image_tensor(r["input_u8"].numpy())
    return max(float((out[0, ::4, ::4] - r["ch0_sub4"]).abs().max()),
               float((out[:, 517, :] - r["row517"]).abs().max()),
               float((out[:, :, 333] - r["col333"]).abs().max()))


@pytest.mark.parametrize("forced", [dict(mode="bilinear", align_corners=False, antialias=False),
                                    dict(mode="bicubic", align_corners=False, antialias=True),
                                    dict(mode="bilinear", align_corners=True, antialias=True)],
                         ids=["no_antialias", "bicubic", "align_corners"])
def test_sam2_resize_pitfalls_break_parity(utils_tensors, monkeypatch, forced):
    """torchvision's Resize is bilinear + antialias, align_corners False. Measured: the real resize matches
    the fixture within 1.2e-7 (atol 1e-6 above); each mutant misses it by far more on the 1500x40 case (its
    width is downsampled, where antialias matters)."""
    real_interpolate = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate",
                        lambda x, size=None, **_ignored: real_interpolate(x, size=size, **forced))
    assert _sam2_transform_max_diff(utils_tensors, "wide_1500x40") > 1e-6


def test_pi3_resize_filter_pitfall_breaks_parity(fixtures_dir, monkeypatch):
    """PIL Lanczos is the official filter; bicubic (a common substitute) changes the Pi3 input."""
    import PIL.Image

    import gmos_core.preprocess as preprocess

    monkeypatch.setattr(PIL.Image, "LANCZOS", PIL.Image.BICUBIC)  # pi3_resize reads it at call time
    src = np.array(Image.open(fixtures_dir / "utils" / "lanczos_input_854x480.png").convert("RGB"))
    ref = np.array(Image.open(fixtures_dir / "utils" / "lanczos_output_672x378.png").convert("RGB"))
    assert not np.array_equal(preprocess.pi3_resize(src, (378, 672)), ref)


def _last_max_on_ties(x, threshold):
    """get_numpy_hard_max with the tie-break flipped (last maximum wins) - real code on reversed channels."""
    return get_numpy_hard_max(x[::-1], threshold)[::-1]


def _max_at_least_threshold(x, threshold):
    """Keeps pixels whose max equals the threshold (>= instead of >): inputs are quantised to 0.5 steps."""
    return get_numpy_hard_max(x, threshold - 0.25)


@pytest.mark.parametrize("mutant", [_last_max_on_ties, _max_at_least_threshold], ids=["last_max", "ge_threshold"])
@pytest.mark.parametrize("threshold", ["0", "0.5"])
def test_hard_max_pitfalls_break_parity(utils_json, mutant, threshold):
    """The fixture holds exact ties and exact threshold values, so a different tie-break or comparison is
    caught by the exact check of test_get_numpy_hard_max."""
    section = utils_json["get_numpy_hard_max"]
    x = np.array(section["input"], dtype=np.float32)
    expected = np.array(section[f"threshold_{threshold}"], dtype=np.float32)
    np.testing.assert_array_equal(get_numpy_hard_max(x, float(threshold)), expected)  # the real one passes
    assert not np.array_equal(mutant(x, float(threshold)), expected)


def test_slot_map_tie_break_pitfall_breaks_parity(utils_json):
    """hard_max_slots (the memory-light form the labeller uses) with a last-max tie-break differs too."""
    x = np.array(utils_json["get_numpy_hard_max"]["input"], dtype=np.float32)
    expected = np.array(utils_json["get_numpy_hard_max"]["threshold_0"], dtype=np.float32)
    real = hard_max_slots(x, 0.0)
    flipped = hard_max_slots(x[::-1], 0.0)
    flipped = np.where(flipped >= 0, x.shape[0] - 1 - flipped, -1)
    want = np.where(expected.sum(0) > 0, expected.argmax(0), -1)
    np.testing.assert_array_equal(real, want)
    assert not np.array_equal(flipped, want)
