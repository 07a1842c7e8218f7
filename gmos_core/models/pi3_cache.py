"""Per-frame DINOv2 token cache for sliding windows (official ``utils.encode_pi3_with_cache`` semantics).

Every frame goes through DINOv2 once; each window only reruns the Pi3 decoder. The cache is a plain
mapping ``frame index -> (h*w, C) tokens``; :class:`Pi3TokenCache` is a bounded one that evicts the oldest
entries (the engine may use it or its own). The model stays pure: this is a function over model + cache.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import MutableMapping

import torch

from gmos_core.models.pi3_encoder import Pi3Encoder


class Pi3TokenCache(OrderedDict):
    """``frame index -> tokens`` holding at most ``max_frames`` entries (oldest inserted evicted first)."""

    def __init__(self, max_frames: int = 64) -> None:
        super().__init__()
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > self.max_frames:
            self.popitem(last=False)


def encode_pi3_with_cache(model: Pi3Encoder, imgs: torch.Tensor, video_indices: torch.Tensor,
                          cache: MutableMapping[int, torch.Tensor]) -> torch.Tensor:
    """imgs (B, N, 3, H, W) in [0,1] with their frame indices (B, N) -> (B, N, h, w, C).

    Frames missing from ``cache`` are encoded once (batched, in order of first appearance) and stored;
    duplicates (edge-clamped windows) share one entry. Numerically identical to ``model(imgs)``.
    """
    if imgs.ndim != 5:
        raise ValueError(f"imgs must be (B, N, 3, H, W), got {tuple(imgs.shape)}")
    b, n, _, height, width = imgs.shape
    video_indices = torch.as_tensor(video_indices).reshape(-1)
    if video_indices.numel() != b * n:
        raise ValueError(f"video_indices must have B*N = {b * n} entries, got {video_indices.numel()}")
    flat = imgs.reshape(b * n, 3, height, width)
    todo: dict[int, int] = {}  # frame index -> first flat position
    for pos, index in enumerate(video_indices.tolist()):
        if index not in cache and index not in todo:
            todo[index] = pos
    if todo:
        tokens = model.encode_frames(flat[list(todo.values())])
        for row, index in enumerate(todo):
            cache[index] = tokens[row]
    try:
        hidden = torch.stack([cache[i] for i in video_indices.tolist()])
    except KeyError as exc:
        raise RuntimeError(f"frame {exc} was evicted from the Pi3 token cache while building this batch; "
                           "increase the cache size above the batch's frame count") from exc
    return model.decode(hidden, n, height, width)
