"""Real video decoding/encoding and frame folders."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core import io as gio


def test_dog_segment_decodes(shared_dir):
    path = shared_dir / "data" / "videos" / "dog.mp4"
    info = gio.video_info(path)
    assert (info.width, info.height) == (1280, 720)
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    assert info.num_frames == 289
    assert gio.resolve_fps_stride(info.fps) == 3
    frames, fps = gio.read_video(path, start=10, max_frames=4)
    assert frames.shape == (4, 720, 1280, 3) and frames.dtype == np.uint8
    assert fps == info.fps
    assert frames.std() > 10  # real content, not a blank decode
    # start offset really skips frames
    first = next(gio.iter_video_frames(path, start=10, max_frames=1))
    np.testing.assert_array_equal(first, frames[0])


def test_write_then_read_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 256, (5, 6, 8, 3), dtype=np.uint8), 8, 1), 8, 2)
    path = tmp_path / "clip.mp4"
    assert gio.write_video(path, frames, fps=24.0) == 5
    info = gio.video_info(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(24.0)
    back, _ = gio.read_video(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12  # lossy, but the same picture


def test_odd_sizes_are_padded(tmp_path):
    frames = np.zeros((2, 9, 11, 3), np.uint8)
    gio.write_video(tmp_path / "odd.mp4", frames, fps=10)
    info = gio.video_info(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (12, 10)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        gio.video_info(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot be opened"):
        gio.video_info(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="uint8"):
        gio.write_video(tmp_path / "f.mp4", [np.zeros((4, 4, 3), np.float32)], fps=10)


def _write_frames(folder, names, size=(8, 6), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new(mode, size, color=i * 20 if mode == "L" else (i * 20, 0, 0)).save(folder / name)


def test_frame_folder_order_and_rgb(tmp_path):
    seq = tmp_path / "seq"
    _write_frames(seq, ["b.PNG", "a.PNG", "c.PNG"], mode="L")
    (seq / "notes.txt").write_text("ignored")
    files = gio.list_frame_files(seq)
    assert [p.name for p in files] == ["a.PNG", "b.PNG", "c.PNG"]
    frames = gio.read_frame_folder(seq)
    assert frames.shape == (3, 6, 8, 3)  # grayscale converted to RGB
    assert frames[0, 0, 0, 0] == 20 and frames[1, 0, 0, 0] == 0


def test_frame_folder_mixed_extensions_rejected(tmp_path):
    seq = tmp_path / "mixed"
    _write_frames(seq, ["a.png", "b.jpg"])
    with pytest.raises(ValueError, match="mixed image extensions"):
        gio.list_frame_files(seq)


def test_discover_sources(tmp_path, shared_dir):
    _write_frames(tmp_path / "root" / "seqA", ["0.jpg", "1.jpg"])
    _write_frames(tmp_path / "root" / "seqB", ["0.png"])
    (tmp_path / "root" / "empty").mkdir()
    sources = gio.discover_sources([tmp_path / "root", shared_dir / "data" / "videos" / "dog.mp4"])
    assert [(s.name, s.kind) for s in sources] == [("seqA", "frames"), ("seqB", "frames"), ("dog", "mp4")]
    assert sources[0].metadata_fps() is None and sources[2].metadata_fps() == pytest.approx(29.97, abs=1e-3)
    with pytest.raises(ValueError, match="no .mp4 files"):
        gio.discover_sources([tmp_path / "root" / "empty"])
    with pytest.raises(FileNotFoundError):
        gio.discover_sources([tmp_path / "nope"])
    with pytest.raises(ValueError, match="share the sequence name"):
        gio.discover_sources([tmp_path / "root" / "seqA", tmp_path / "root" / "seqA"])
