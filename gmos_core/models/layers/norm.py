"""Normalisation helpers: channel-first LayerNorm and LayerScale."""
from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dim of an NCHW tensor (biased variance), SAM-style; keys weight/bias."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class LayerScale(nn.Module):
    """Per-channel residual scale (key ``gamma``), as DINOv2/Pi3 blocks use it."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma
