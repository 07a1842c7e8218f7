"""Transformer blocks.

* ``ViTBlock``: pre-norm residual block with LayerScale (DINOv2 blocks; Pi3 ``BlockRope`` when given RoPE
  and qk-norm).
* ``SelfAttentionBlock`` / ``TransformerEncoder``: the heads' post-norm RoPE encoder.
* ``TwoWayAttentionBlock`` / ``TwoWayTransformer``: SAM's two-way decoder with RoPE on the image side.
"""
from __future__ import annotations

import torch
from torch import nn

from gmos_core.models.layers.attention import Attention, FusedQKVAttention
from gmos_core.models.layers.mlp import MLP, ViTMlp
from gmos_core.models.layers.norm import LayerScale
from gmos_core.models.layers.rope import RoPE2D


class ViTBlock(nn.Module):
    """x = x + ls1 * attn(norm1(x)); x = x + ls2 * mlp(norm2(x)). Keys norm1, attn.*, ls1, norm2, mlp.*, ls2."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 init_values: float = 1.0, qk_norm: bool = False, qk_norm_eps: float = 1e-5,
                 rope: RoPE2D | None = None, bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = FusedQKVAttention(dim, num_heads, qkv_bias=bias, proj_bias=bias, qk_norm=qk_norm,
                                      qk_norm_eps=qk_norm_eps, rope=rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ViTMlp(dim, int(dim * mlp_ratio), bias=bias)
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), positions))
        return x + self.ls2(self.mlp(self.norm2(x)))


class SelfAttentionBlock(nn.Module):
    """Post-norm encoder layer: x = norm1(x + attn(x, RoPE on q,k)); x = norm2(x + mlp(x)). LN eps 1e-5."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, rope: RoPE2D) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads, rope=rope)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=nn.GELU)
        self.norm2 = nn.LayerNorm(embedding_dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x, x, q_pos=positions, k_pos=positions))
        return self.norm2(x + self.mlp(x))


class TransformerEncoder(nn.Module):
    """Stack of SelfAttentionBlocks on an NCHW feature map with integer (y, x) positions."""

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, rope: RoPE2D) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SelfAttentionBlock(embedding_dim, num_heads, mlp_dim, rope) for _ in range(depth))

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), positions (B, h*w, 2) row-major -> (B, C, h, w)."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).permute(0, 2, 1)
        for layer in self.layers:
            tokens = layer(tokens, positions)
        return tokens.permute(0, 2, 1).reshape(b, c, h, w)


class TwoWayAttentionBlock(nn.Module):
    """SAM two-way block; image-side RoPE (keys rotated token->image, queries rotated image->token)."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int,
                 skip_first_layer_pe: bool, rope: RoPE2D) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate, rope=rope)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=nn.GELU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate, rope=rope)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries, keys, query_pe, key_pos):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)  # no residual, no PE (as in SAM)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, keys, keys, q_pos=None, k_pos=key_pos))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys, q, queries, q_pos=key_pos, k_pos=None))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, rope: RoPE2D,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0), rope=rope)
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads,
                                                   downsample_rate=attention_downsample_rate, rope=rope)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image: torch.Tensor, positions: torch.Tensor, point_embedding: torch.Tensor):
        """image (B, C, h, w), positions (B, h*w, 2), point_embedding (B, Nq, C) -> (queries, keys NCHW)."""
        b, c, h, w = image.shape
        keys = image.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, positions)
        q = queries + point_embedding
        attn = self.final_attn_token_to_image(q, keys, keys, q_pos=None, k_pos=positions)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys.permute(0, 2, 1).reshape(b, c, h, w)
