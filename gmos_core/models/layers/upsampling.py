"""Mask upsampling with SAM 2 high-resolution skips (the skip add happens *before* the LayerNorm2d)."""
from __future__ import annotations

import torch
from torch import nn

from gmos_core.models.layers.mlp import MLP
from gmos_core.models.layers.norm import LayerNorm2d


class MaskUpsampler(nn.Sequential):
    """Sequential [ConvT(C->C/4, 2, 2), LayerNorm2d, GELU, ConvT(C/4->C/8, 2, 2), GELU] (official indices
    0, 1, 3 carry weights) applied with the SAM 2 skips: x = GELU(LN(ConvT0(x) + s1)); x = GELU(ConvT3(x) + s0)."""

    def __init__(self, dim: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor, high_res: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        dc1, ln1, act1, dc2, act2 = self
        feat_s0, feat_s1 = high_res
        x = act1(ln1(dc1(x) + feat_s1))
        return act2(dc2(x) + feat_s0)


class UpSampling(nn.Module):
    """Per-object masks = hypernetwork(tokens) @ upscaled features. Keys output_upscaling.*,
    output_hypernetwork_mlp.*; output (B, Nq, 4h, 4w)."""

    def __init__(self, transformer_dim: int = 256, num_objs: int = 100) -> None:
        super().__init__()
        self.num_objs = num_objs
        self.output_upscaling = MaskUpsampler(transformer_dim)
        self.output_hypernetwork_mlp = MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)

    def forward(self, src: torch.Tensor, tokens: torch.Tensor, high_res: list[torch.Tensor]) -> torch.Tensor:
        hyper = self.output_hypernetwork_mlp(tokens)  # (B, Nq, C/8)
        upscaled = self.output_upscaling(src, high_res)  # (B, C/8, 4h, 4w)
        b, c, h, w = upscaled.shape
        return (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
