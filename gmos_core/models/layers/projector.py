"""TokenProjector: channels-last Linear -> GELU -> Dropout -> LayerNorm(eps 1e-6) (keys proj.*, norm.*)."""
from __future__ import annotations

import torch
from torch import nn


class TokenProjector(nn.Module):
    def __init__(self, in_dim: int, embed_dim: int, p_drop: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(p_drop)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_dim) channels-last -> (..., embed_dim)."""
        return self.norm(self.drop(self.act(self.proj(x))))
