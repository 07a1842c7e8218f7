"""DINOv2 ViT with register tokens, as used by Pi3 (``dinov2_vitl14_reg``, no ``mask_token``).

Only the inference path Pi3 uses is implemented: patch embedding, positional-embedding interpolation
(bicubic, antialias, computed in float32, with the official ``hw == grid² and H == W`` shortcut), register
tokens inserted after the class token, pre-norm blocks with LayerScale, final norm.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from gmos_core.models.layers.transformer import ViTBlock


class PatchEmbed(nn.Module):
    """Conv patchify (key ``proj``): (B, 3, H, W) -> (B, h*w, C), row-major."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT (keys cls_token, pos_embed, register_tokens, patch_embed.*, blocks.{i}.*, norm.*)."""

    def __init__(self, embed_dim: int = 1024, depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0,
                 patch_size: int = 14, img_size: int = 518, num_register_tokens: int = 4,
                 init_values: float = 1.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dim, num_heads, mlp_ratio, norm_eps=norm_eps, init_values=init_values)
            for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + h*w, C) positional embedding for an image of ``height x width`` pixels."""
        n_stored = self.pos_embed.shape[1] - 1
        if num_patches == n_stored and height == width:
            return self.pos_embed  # official shortcut: stored table used as is (no resampling)
        pos_embed = self.pos_embed.float()
        cls_pos = pos_embed[:, 0]
        patch_pos = pos_embed[:, 1:]
        grid = int(math.sqrt(n_stored))
        if grid * grid != n_stored:
            raise ValueError(f"pos_embed has {n_stored} patch positions, not a square grid")
        size = (height // self.patch_size, width // self.patch_size)
        patch_pos = F.interpolate(patch_pos.reshape(1, grid, grid, -1).permute(0, 3, 1, 2),
                                  size=size, mode="bicubic", antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, pos_embed.shape[-1])
        return torch.cat((cls_pos.unsqueeze(0), patch_pos), dim=1).to(dtype)

    def prepare_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised -> (B, 1 + R + h*w, C) = [cls, registers, patches] (registers get no PE)."""
        _, _, height, width = images.shape
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, height, width, x.dtype)
        return torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, H, W) -> normed patch tokens ``x_norm_patchtokens`` (B, h*w, C)."""
        x = self.prepare_tokens(images)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]
