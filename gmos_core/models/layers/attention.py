"""Attention layers.

* ``FusedQKVAttention``: the ViT attention of DINOv2 and Pi3's decoder (one ``qkv`` Linear, optional
  per-head LayerNorm ``q_norm``/``k_norm`` and 2-D RoPE), ``scaled_dot_product_attention`` with the default
  1/sqrt(head_dim) scale.
* ``Attention``: the SAM-style attention of the GMOS heads (separate q/k/v projections, optional internal
  downsampling, RoPE applied to q and/or k only when their positions are given).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from gmos_core.models.layers.rope import RoPE2D


class FusedQKVAttention(nn.Module):
    """qkv -> (q_norm, k_norm) -> RoPE -> SDPA -> proj. Keys: qkv, proj[, q_norm, k_norm]."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, qk_norm_eps: float = 1e-5, rope: RoPE2D | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        # Official BlockRope: q/k norms are plain nn.LayerNorm(head_dim) with the default eps 1e-5 (the
        # block's eps-1e-6 norm_layer is not forwarded to them).
        self.q_norm = nn.LayerNorm(head_dim, eps=qk_norm_eps) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=qk_norm_eps) if qk_norm else None
        self.rope = rope

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).transpose(1, 3)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (B, heads, N, head_dim)
        if self.q_norm is not None:
            # LayerNorm runs in fp32 under autocast; the official code casts back to v's dtype before RoPE.
            q = self.q_norm(q).to(v.dtype)
            k = self.k_norm(k).to(v.dtype)
        if self.rope is not None:
            if positions is None:
                raise ValueError("this attention layer uses RoPE: positions (B, N, 2) are required")
            q = self.rope(q, positions)
            k = self.rope(k, positions)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class Attention(nn.Module):
    """SAM-style attention (keys q_proj, k_proj, v_proj, out_proj) with optional RoPE on q and/or k."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, dropout: float = 0.0,
                 kv_in_dim: int | None = None, rope: RoPE2D | None = None) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"internal dim {self.internal_dim} is not divisible by num_heads {num_heads}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout
        # Shared, stateless rotary module: stored outside the child modules so it adds no keys and is not
        # registered twice.
        self._rope = [rope] if rope is not None else []

    @property
    def rope(self) -> RoPE2D | None:
        return self._rope[0] if self._rope else None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                q_pos: torch.Tensor | None = None, k_pos: torch.Tensor | None = None) -> torch.Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        if self.rope is not None:
            if q_pos is not None:
                q = self.rope(q, q_pos)
            if k_pos is not None:
                k = self.rope(k, k_pos)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        b, h, n, d = out.shape
        out = out.transpose(1, 2).reshape(b, n, h * d)
        return self.out_proj(out)
