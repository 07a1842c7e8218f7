"""The official output layout writer."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.io import video_info
from gmos_core.io.layout import SequenceOutputWriter, parse_save_mode, png_labels


def test_parse_save_mode():
    assert parse_save_mode("mask+mp4", "gmos_offline") == ("mask", "mp4")
    assert parse_save_mode("prob", "gmos_s") == ("prob",)
    with pytest.raises(ValueError, match="tokens from"):
        parse_save_mode("prob", "gmos_online")
    with pytest.raises(ValueError, match="tokens from"):
        parse_save_mode("", "gmos_s")


def test_png_labels_wrap_large_ids():
    labels = np.array([[0, 1, 255, 256, 600]], np.uint16)
    np.testing.assert_array_equal(png_labels(labels), [[0, 1, 255, 1, 90]])


def test_offline_writer_layout(tmp_path):
    writer = SequenceOutputWriter(tmp_path, "gmos_offline", ("mask", "mp4"), "seq", fps=10.0)
    rgb = np.full((6, 8, 3), 100, np.uint8)
    for i in range(3):
        mos = np.zeros((6, 8), np.uint16)
        mos[1:3, 1:4] = 2
        writer.write(i, rgb, {"mos-i": mos * (i % 2), "mos": mos})
    writer.close()
    assert sorted(p.name for p in (tmp_path / "mos_frame" / "seq").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert np.array(Image.open(tmp_path / "mos-i_frame" / "seq" / "00000.png")).max() == 0
    assert np.array(Image.open(tmp_path / "mos-i_frame" / "seq" / "00001.png")).max() == 2
    assert video_info(tmp_path / "mos_mp4" / "seq.mp4").num_frames == 3
    assert video_info(tmp_path / "mos-i_mp4" / "seq.mp4").fps == pytest.approx(10.0)


def test_gmos_s_writer_layout(tmp_path):
    writer = SequenceOutputWriter(tmp_path, "gmos_s", ("prob", "mask"), "s", fps=30.0)
    prob = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    writer.write(0, None, {"": (prob > 0.5).astype(np.uint16)}, prob=prob)
    writer.close()
    u8 = np.array(Image.open(tmp_path / "prob" / "s" / "00000.png"))
    np.testing.assert_array_equal(u8, np.clip(prob * 255, 0, 255).astype(np.uint8))
    mask = Image.open(tmp_path / "frame" / "s" / "00000.png")
    assert mask.mode == "P"
    np.testing.assert_array_equal(np.array(mask), (prob > 0.5).astype(np.uint8))
    with pytest.raises(ValueError, match="probability"):
        SequenceOutputWriter(tmp_path, "gmos_s", ("prob",), "s", 30.0).write(0, None, {"": prob > 0.5})
