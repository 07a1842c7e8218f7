"""MP4 reading (PyAV, with the container's frame rate) and MP4 writing (H.264 when available, else MPEG-4)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video stream."""

    width: int
    height: int
    fps: float
    num_frames: int  # container's frame count (0 when unknown)


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except Exception as exc:  # PyAV raises its own error classes; name the file
        raise ValueError(f"{path}: cannot be opened as a video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: contains no video stream")
    return container


def _stream_fps(stream) -> float:
    # The official code takes mediapy's metadata fps (ffmpeg's stream rate); PyAV's average_rate is the same
    # stream rate as an exact fraction (e.g. 30000/1001 where ffmpeg prints 29.97).
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError("video stream has no frame rate metadata; pass --fps")
    return float(rate)


def video_info(path: str | Path) -> VideoInfo:
    """Size, frame rate and frame count of the first video stream of ``path``."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        return VideoInfo(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=_stream_fps(stream),
            num_frames=int(stream.frames or 0),
        )
    finally:
        container.close()


def iter_video_frames(path: str | Path, start: int = 0, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    """Decode frames as (H, W, 3) uint8 RGB, in presentation order, starting at frame ``start``."""
    if start < 0 or (max_frames is not None and max_frames < 0):
        raise ValueError(f"start and max_frames must be >= 0, got {start}, {max_frames}")
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        emitted = 0
        index = -1
        decoded = container.decode(stream)
        while max_frames is None or emitted < max_frames:
            try:
                frame = next(decoded, None)
            except Exception as exc:  # PyAV's decode errors (corrupt or truncated data): name file and frame
                raise ValueError(f"{path}: corrupt or truncated video, cannot decode frame {index + 1} ({exc}); "
                                 f"expected a complete, readable video") from exc
            if frame is None:
                listed = int(stream.frames or 0)
                if listed and index + 1 < listed:  # the container's index lists frames whose data is missing
                    import logging

                    logging.getLogger("gmos_core.io").warning(
                        "WARNING: %s: only %d of the %d frames the container lists could be decoded; the file looks "
                        "truncated (outputs cover the decoded frames only)", path, index + 1, listed)
                break
            index += 1
            if index < start:
                continue
            yield frame.to_ndarray(format="rgb24")
            emitted += 1
    finally:
        container.close()


def read_video(path: str | Path, start: int = 0, max_frames: Optional[int] = None) -> tuple[np.ndarray, float]:
    """All (or ``max_frames``) frames as a (T, H, W, 3) uint8 array, plus the metadata fps."""
    fps = video_info(path).fps
    frames = list(iter_video_frames(path, start, max_frames))
    if not frames:
        raise ValueError(f"{path}: no frames decoded (start={start}, max_frames={max_frames})")
    return np.stack(frames), fps


def _pick_codec() -> str:
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError("PyAV has neither an H.264 nor an MPEG-4 encoder")


class VideoWriter:
    """Incremental MP4 writer: ``write(rgb)`` per frame, then ``close()`` (or use as a context manager)."""

    def __init__(self, path: str | Path, fps: float, codec: Optional[str] = None, crf: int = 18):
        import av
        from fractions import Fraction

        if not (fps and fps > 0):
            raise ValueError(f"VideoWriter: fps must be > 0, got {fps!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.codec = codec or _pick_codec()
        self._container = av.open(str(self.path), mode="w")
        self._rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream(self.codec, rate=self._rate)
        self._stream.pix_fmt = "yuv420p"
        if self.codec in ("libx264", "h264"):
            self._stream.options = {"crf": str(crf)}
        self._size: Optional[tuple[int, int]] = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"VideoWriter.write: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        if self._size is None:
            # yuv420p needs even sizes; pad by one edge row/column rather than fail.
            self._size = (height + height % 2, width + width % 2)
            self._stream.height, self._stream.width = self._size
        elif (height + height % 2, width + width % 2) != self._size:
            raise ValueError(f"VideoWriter.write: frame size {rgb.shape[:2]} differs from the first frame's")
        if rgb.shape[:2] != self._size:
            rgb = np.pad(rgb, ((0, self._size[0] - height), (0, self._size[1] - width), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._size is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write (H, W, 3) uint8 frames to an MP4; returns the number of frames written."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.frames_written
