"""Frame folders (the official image-directory input) and input discovery for `gmos infer`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_frame_files(directory: str | Path) -> list[Path]:
    """Image files of a frame folder: .jpg/.jpeg/.png (case-insensitive), one extension per folder,
    sorted lexicographically by file name (the official order)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"frame folder not found: {directory}")
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(f"{directory}: no .jpg/.jpeg/.png frames found")
    extensions = sorted({p.suffix.lower() for p in files})
    if len(extensions) > 1:
        raise ValueError(f"{directory}: mixed image extensions {extensions}; expected one extension per folder")
    return sorted(files, key=lambda p: p.name)


def read_frame(path: str | Path) -> np.ndarray:
    """One image as (H, W, 3) uint8 RGB (PIL ``convert('RGB')``, as the official loader)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except OSError as exc:  # PIL.UnidentifiedImageError, truncated files, unreadable files
        raise ValueError(f"{path}: cannot be read as an image ({exc}); expected a valid .jpg/.jpeg/.png "
                         f"frame") from exc


def iter_frame_folder(directory: str | Path, start: int = 0, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
    files = list_frame_files(directory)[start:]
    if max_frames is not None:
        files = files[:max_frames]
    for path in files:
        yield read_frame(path)


def read_frame_folder(directory: str | Path, max_frames: Optional[int] = None) -> np.ndarray:
    frames = list(iter_frame_folder(directory, 0, max_frames))
    sizes = {f.shape for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"{directory}: frames differ in size {sorted(sizes)}; all frames of a video must match")
    return np.stack(frames)


@dataclass(frozen=True)
class VideoSource:
    """One input sequence: an .mp4 file or a frame folder. ``name`` = file stem / folder name."""

    path: Path
    kind: str  # "mp4" | "frames"

    @property
    def name(self) -> str:
        return self.path.stem if self.kind == "mp4" else self.path.name

    def metadata_fps(self) -> Optional[float]:
        """Container fps for mp4 files; None for frame folders (they have none)."""
        if self.kind != "mp4":
            return None
        from gmos_core.io.video import video_info

        return video_info(self.path).fps

    def num_frames(self) -> int:
        if self.kind == "frames":
            return len(list_frame_files(self.path))
        from gmos_core.io.video import video_info

        return video_info(self.path).num_frames

    def frames(self, start: int = 0, max_frames: Optional[int] = None) -> Iterator[np.ndarray]:
        if self.kind == "mp4":
            from gmos_core.io.video import iter_video_frames

            return iter_video_frames(self.path, start, max_frames)
        return iter_frame_folder(self.path, start, max_frames)

    def read_all(self, max_frames: Optional[int] = None) -> np.ndarray:
        frames = list(self.frames(0, max_frames))
        if not frames:
            raise ValueError(f"{self.path}: no frames")
        sizes = {f.shape for f in frames}
        if len(sizes) != 1:
            raise ValueError(f"{self.path}: frames differ in size {sorted(sizes)}")
        return np.stack(frames)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def discover_sources(inputs: list[str | Path]) -> list[VideoSource]:
    """Resolve CLI inputs: .mp4 files, frame folders, or folders containing .mp4 files / frame folders
    (one level deep, sorted by name). Raises ValueError naming any input that is none of these."""
    sources: list[VideoSource] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_file():
            if path.suffix.lower() != ".mp4":
                raise ValueError(f"{path}: expected an .mp4 file, a frame folder, or a folder of those")
            sources.append(VideoSource(path, "mp4"))
        elif _is_frame_folder(path):
            sources.append(VideoSource(path, "frames"))
        elif path.is_dir():
            found = []
            for child in sorted(path.iterdir(), key=lambda p: p.name):
                if child.is_file() and child.suffix.lower() == ".mp4":
                    found.append(VideoSource(child, "mp4"))
                elif _is_frame_folder(child):
                    found.append(VideoSource(child, "frames"))
            if not found:
                raise ValueError(f"{path}: contains no .mp4 files and no frame folders (.jpg/.jpeg/.png)")
            sources.extend(found)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several inputs share the sequence name(s) {duplicates}; outputs would overwrite each other")
    return sources
