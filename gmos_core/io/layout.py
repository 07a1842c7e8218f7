"""The official output layout of the inference scripts, written frame by frame.

GMOS (``inference_gmos.py``): ``--save_mode`` tokens ``mask`` and ``mp4`` ('+'-combined):
    mos-i_frame/<seq>/{i:05d}.png, mos_frame/<seq>/{i:05d}.png   (DAVIS palette PNGs)
    mos-i_mp4/<seq>.mp4, mos_mp4/<seq>.mp4                         (overlay videos)
GMOS-S (``inference_gmos_s.py``): tokens ``prob``, ``mask``, ``mp4``:
    prob/<seq>/{i:05d}.png (8-bit, truncated), frame/<seq>/{i:05d}.png (palette, 0/1), mp4/<seq>.mp4
The online (causal) mode has only MOS-I outputs; the offline mode writes both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from gmos_core.io.overlay import overlay_frame
from gmos_core.io.palette import save_indexed_png, save_probability_png

SAVE_TOKENS = {"gmos_s": ("prob", "mask", "mp4"), "gmos_online": ("mask", "mp4"), "gmos_offline": ("mask", "mp4")}
DEFAULT_SAVE_MODE = {"gmos_s": "prob", "gmos_online": "mask", "gmos_offline": "mask"}


def parse_save_mode(save_mode: str, mode: str) -> tuple[str, ...]:
    """'mask+mp4' → ('mask', 'mp4'), validated against what ``mode`` can write."""
    tokens = tuple(t for t in save_mode.split("+") if t)
    allowed = SAVE_TOKENS[mode]
    bad = [t for t in tokens if t not in allowed]
    if not tokens or bad:
        raise ValueError(f"--save-mode {save_mode!r}: expected '+'-joined tokens from {allowed} for mode {mode}")
    return tokens


def png_labels(labels: np.ndarray) -> np.ndarray:
    """Label image for an 8-bit palette PNG: ids above 255 (long online streams) wrap into 1..255."""
    labels = np.asarray(labels)
    if labels.size and labels.max() > 255:
        labels = np.where(labels > 0, (labels.astype(np.int64) - 1) % 255 + 1, 0)
    return labels.astype(np.uint8)


class SequenceOutputWriter:
    """Writes one sequence's outputs in the official layout as frames arrive (in order)."""

    def __init__(self, save_dir: str | Path, mode: str, save_tokens: tuple[str, ...], seq_name: str,
                 fps: float) -> None:
        self.save_dir = Path(save_dir)
        self.mode = mode
        self.tokens = save_tokens
        self.seq = seq_name
        self.fps = fps
        self._videos: dict[str, object] = {}
        self.frames_written = 0
        if mode == "gmos_s":
            self.streams = ("",)
        elif mode == "gmos_online":
            self.streams = ("mos-i",)
        else:
            self.streams = ("mos-i", "mos")

    def _video(self, name: str):
        if name not in self._videos:
            from gmos_core.io.video import VideoWriter

            self._videos[name] = VideoWriter(self.save_dir / name / f"{self.seq}.mp4", self.fps)
        return self._videos[name]

    def write(self, index: int, rgb: Optional[np.ndarray], labels: dict[str, np.ndarray],
              prob: Optional[np.ndarray] = None) -> None:
        """labels: {'mos-i': ..., 'mos': ...} (GMOS) or {'': mask} (GMOS-S); rgb needed only for mp4."""
        name = f"{index:05d}.png"
        if self.mode == "gmos_s":
            if "prob" in self.tokens:
                if prob is None:
                    raise ValueError("GMOS-S 'prob' output needs the probability map")
                save_probability_png(self.save_dir / "prob" / self.seq / name, prob)
            if "mask" in self.tokens:
                save_indexed_png(self.save_dir / "frame" / self.seq / name, png_labels(labels[""]))
            if "mp4" in self.tokens:
                self._video("mp4").write(overlay_frame(rgb, png_labels(labels[""])))
        else:
            for stream in self.streams:
                label = png_labels(labels[stream])
                if "mask" in self.tokens:
                    save_indexed_png(self.save_dir / f"{stream}_frame" / self.seq / name, label)
                if "mp4" in self.tokens:
                    self._video(f"{stream}_mp4").write(overlay_frame(rgb, label))
        self.frames_written += 1

    def close(self) -> None:
        for video in self._videos.values():
            video.close()
        self._videos.clear()
