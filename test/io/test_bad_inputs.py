"""Unreadable frames and corrupt videos: a ValueError naming the file (and frame) and what was expected."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gmos_core.io import iter_video_frames
from gmos_core.io.frames import iter_frame_folder, read_frame


def test_text_file_named_png_names_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "00000.png")
    (tmp_path / "00001.png").write_text("not an image")
    frames = iter_frame_folder(tmp_path)
    assert next(frames).shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"00001\.png: cannot be read as an image.*expected a valid"):
        next(frames)
    with pytest.raises(ValueError, match="00001.png"):
        read_frame(tmp_path / "00001.png")


def test_truncated_video_names_the_file_and_frame(shared_dir, tmp_path):
    # The real video keeps its index up front: a truncated copy opens, then fails while decoding.
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes((shared_dir / "data" / "videos" / "dog.mp4").read_bytes()[:20000])
    with pytest.raises(ValueError, match=r"truncated\.mp4: corrupt or truncated video, cannot decode frame 0"):
        list(iter_video_frames(bad))


def test_zero_byte_video(tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.mp4: cannot be opened as a video"):
        list(iter_video_frames(bad))


def test_start_and_max_frames_still_honoured(repo_root):
    frames = list(iter_video_frames(repo_root / "gmos_core" / "data" / "dog_demo.mp4", 2, 3))
    assert len(frames) == 3


def test_video_truncated_mid_stream_warns_with_counts(tmp_path, caplog):
    # An index-first (faststart) file cut in half still opens and decodes its first frames: say so.
    import av

    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(20):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="gmos_core.io"):
        assert len(list(iter_video_frames(path))) == 20
        assert not caplog.records
        decoded = len(list(iter_video_frames(cut)))
    assert 0 < decoded < 20
    assert f"only {decoded} of the 20 frames the container lists could be decoded" in caplog.text
