"""A cheap stand-in implementing the EngineModels interface (tests only).

Frames carry their own number in the pixels (see ``coded_frame``); the fake "encoder" reads it back, the
fake "decoder" records which frames each window contained, and the fake head answers with a mask that
depends on the segmented frame, so tests can check windows, identities and caching without real models.
"""
from __future__ import annotations

import numpy as np
import torch


def coded_frame(number: int, height: int = 8, width: int = 10) -> np.ndarray:
    """An RGB frame whose first pixel encodes ``number`` (base 256, up to 2**24 − 1)."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[0, 0] = [(number >> 16) & 255, (number >> 8) & 255, number & 255]
    frame[1:, :, 0] = number % 7 * 30  # some content
    return frame


def frame_number(frame: np.ndarray) -> int:
    r, g, b = (int(v) for v in frame[0, 0])
    return (r << 16) | (g << 8) | b


class FakeModels:
    """EngineModels interface; records what the engine asked for."""

    def __init__(self, mode: str = "gmos_s", anchor: str = "center", window_size: int = 5) -> None:
        self.mode = mode
        self.anchor = anchor
        self.window_size = window_size
        self.device = torch.device("cpu")
        self.description = "fake models (tests only)"
        self.random_weights = True
        self.encoded: list[int] = []      # frame numbers passed through the "DINOv2" encoder
        self.windows: list[list[int]] = []  # frame numbers of every decoded window
        self.sam_encoded: list[int] = []
        self.predictor = None

    def pi3_target_size(self, width, height, pixel_limit):
        return (14, 14)

    def pi3_inputs(self, frames, size_hw):
        return torch.tensor([[float(frame_number(f))] for f in frames])

    def encode_tokens(self, images):
        self.encoded.extend(int(v) for v in images[:, 0])
        return images[:, None, :].clone()  # (M, hw=1, C=1)

    def decode_anchor(self, hidden, num_frames, height, width, position):
        codes = hidden.reshape(-1, num_frames)
        self.windows.extend([[int(v) for v in row] for row in codes])
        return codes[:, position].reshape(-1, 1, 1, 1)

    def sam_inputs(self, frames):
        return torch.tensor([float(frame_number(f)) for f in frames])

    def sam_encode(self, images):
        self.sam_encoded.extend(int(v) for v in images)
        return [{"code": v.reshape(1)} for v in images]

    def sam_head_inputs(self, backbone_outs):
        return torch.cat([b["code"] for b in backbone_outs]), []

    def run_head(self, token, sam_btn, high_res):
        codes = token.reshape(-1)
        # left half foreground on even frames, right half on odd frames
        logits = torch.full((len(codes), 1, 2, 2), -4.0)
        for i, c in enumerate(codes):
            logits[i, 0, :, int(c) % 2] = 4.0
        return {"fg_mask": logits, "iou_pred": torch.full((len(codes), 1), 0.9)}
