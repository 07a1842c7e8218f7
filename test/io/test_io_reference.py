"""gmos_core.io against the official helpers' outputs (fixture section utils/)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gmos_core import io as gio


@pytest.fixture(scope="module")
def utils_ref(fixtures_dir):
    from safetensors.numpy import load_file

    folder = fixtures_dir / "utils"
    return json.loads((folder / "utils.json").read_text()), load_file(str(folder / "utils.safetensors")), folder


def test_resolve_fps_stride_table(utils_ref):
    section = utils_ref[0]["resolve_fps_stride"]
    for fps, stride in section["table"]:
        assert gio.resolve_fps_stride(fps) == stride, fps
    wins = section["stride_arg_wins"]
    with pytest.warns(UserWarning, match="using stride"):
        assert gio.resolve_fps_stride(wins["fps"], wins["stride"]) == wins["result"]


def test_resolve_fps_stride_errors():
    with pytest.raises(ValueError, match="--fps or --stride"):
        gio.resolve_fps_stride(None, None, source="frames/")
    with pytest.raises(ValueError, match="stride must be an integer"):
        gio.resolve_fps_stride(None, 0)
    with pytest.raises(ValueError, match="positive"):
        gio.resolve_fps_stride(-3.0)


@pytest.mark.parametrize("case,stride", [("T7_s1", 1), ("T7_s3", 3)])
def test_group_list_with_stride(utils_ref, case, stride):
    expected = utils_ref[0]["group_list_with_stride"][case]
    assert gio.group_list_with_stride(list(range(7)), 5, stride) == expected


def test_build_indexed_masks(utils_ref):
    section = utils_ref[0]["build_indexed_masks"]
    segments = {
        int(frame): {int(obj): np.array(mask, dtype=bool)[None] for obj, mask in objs.items()}
        for frame, objs in section["segments"].items()
    }
    expected = np.array(section["output"])
    out = gio.build_indexed_masks(segments, *expected.shape)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # The official quirk the fixture holds: overlapping masks add their labels (obj_id + 1) - derived from the
    # fixture's own segments, not from constants of one fixture.
    overlap_seen = False
    for frame, objs in segments.items():
        stack = np.stack([m[0] for m in objs.values()])
        overlap = stack.sum(0) > 1
        if overlap.any():
            overlap_seen = True
            summed = sum((obj + 1) * m[0].astype(int) for obj, m in objs.items())
            np.testing.assert_array_equal(out[frame][overlap], summed[overlap])
    assert overlap_seen, "the fixture section must contain overlapping masks"


def test_build_indexed_masks_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected \\(H, W\\)"):
        gio.build_indexed_masks({0: {0: np.ones((4, 4), bool)}}, 1, 5, 6)
    with pytest.raises(ValueError, match="outside"):
        gio.build_indexed_masks({3: {0: np.ones((5, 6), bool)}}, 1, 5, 6)


def test_overlay_masks_exact(utils_ref):
    tensors = utils_ref[1]
    out = gio.overlay_masks(tensors["overlay_masks/rgb"], tensors["overlay_masks/ann"])
    np.testing.assert_array_equal(out, tensors["overlay_masks/output"])


def test_davis_palette_exact(utils_ref):
    expected = np.array(utils_ref[0]["davis_palette"]["rgb_256x3"], dtype=np.uint8)
    assert gio.DAVIS_PALETTE.shape == (256, 3)
    np.testing.assert_array_equal(gio.DAVIS_PALETTE, expected)


def test_save_indexed_png_matches_official(utils_ref, tmp_path):
    tensors, folder = utils_ref[1], utils_ref[2]
    label = tensors["save_indexed_png_example/label"]
    path = tmp_path / "x.png"
    gio.save_indexed_png(path, label)
    ours, official = Image.open(path), Image.open(folder / "save_indexed_png_example.png")
    assert ours.mode == official.mode == "P"
    np.testing.assert_array_equal(np.array(ours), np.array(official))
    assert ours.getpalette() == official.getpalette()
    assert path.read_bytes() == (folder / "save_indexed_png_example.png").read_bytes()
    np.testing.assert_array_equal(gio.read_indexed_png(path), label)


def test_save_indexed_png_rejects_out_of_range(tmp_path):
    with pytest.raises(ValueError, match="0..255"):
        gio.save_indexed_png(tmp_path / "a.png", np.full((2, 2), 300))
    with pytest.raises(ValueError, match="2-D"):
        gio.save_indexed_png(tmp_path / "a.png", np.zeros((2, 2, 3)))


def test_probability_png_truncates(tmp_path):
    prob = np.array([[0.0, 0.999], [1.5, 0.50196]], dtype=np.float32)
    gio.save_probability_png(tmp_path / "p.png", prob)
    back = np.array(Image.open(tmp_path / "p.png"))
    np.testing.assert_array_equal(back, [[0, 254], [255, 127]])  # 0.50196*255 = 127.9998 -> 127
